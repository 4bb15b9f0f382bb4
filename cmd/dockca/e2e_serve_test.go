package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// svcRun runs the CLI in-process with its own environment.
func svcRun(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return svcRunCtx(context.Background(), t, vars, args...)
}

// svcRunCtx is svcRun with a context, for commands that run until stopped.
func svcRunCtx(ctx context.Context, t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv:       func(k string) string { return vars[k] },
		IsTerminal:   func() bool { return false },
		ReadPassword: func(string) ([]byte, error) { return nil, io.EOF },
	}
	argv := []string{"dockca"}
	if h := vars["DOCKCA_HOME"]; h != "" {
		argv = append(argv, "--home", h)
	}
	code = run(ctx, append(argv, args...), e)
	return out.String(), errb.String(), code
}

func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// buildDockca builds the binary, so the service runs as its own process
// and receives a real SIGTERM.
func buildDockca(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dockca")
	cmd := exec.Command("go", "build", "-tags", "nobadger,nomysql,nopgx", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var (
	svcURLRE = regexp.MustCompile(`URL:\s+(https://\S+)`)
	svcFPRE  = regexp.MustCompile(`Root fingerprint \(SHA-256\): ([0-9a-f]{64})`)
)

// TestServeEndToEndWithRealDockerd: a service on a random loopback port,
// first-start initialisation, tokens minted through the admin socket while
// the service holds the database, a daemon certificate and a client
// certificate enrolled from separate homes, a real dockerd and docker CLI,
// replay and fingerprint refusals, renewal, revocation, CRL and metrics,
// and a clean SIGTERM shutdown.
func TestServeEndToEndWithRealDockerd(t *testing.T) {
	dockerdtest.Require(t)
	bin := buildDockca(t)
	caHome := dockerdtest.ShortTempDir(t)
	os.Remove(caHome) // first start creates it
	vars := map[string]string{"DOCKCA_HOME": caHome, "DOCKCA_PASSWORD": "e2e-password-123"}

	srv := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--log-format", "json")
	srv.Env = append(os.Environ(), "DOCKCA_HOME="+caHome, "DOCKCA_PASSWORD=e2e-password-123")
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	srv.Stderr = &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	var caURL string
	var banner strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		banner.WriteString(sc.Text() + "\n")
		if m := svcURLRE.FindStringSubmatch(sc.Text()); m != nil {
			caURL = m[1]
		}
		if strings.HasPrefix(sc.Text(), "Mint a one-time token") {
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if caURL == "" {
		t.Fatalf("no URL in the banner:\n%s\n%s", banner.String(), logs.String())
	}
	if !strings.Contains(banner.String(), "Initialised certificate authority") {
		t.Fatalf("first start did not initialise:\n%s", banner.String())
	}

	// The service holds the database; token create goes through the socket.
	tokOut, tokErr, code := svcRun(t, vars, "token", "create", "--kind", "daemon", "--san", "127.0.0.1", "localhost")
	if code != 0 {
		t.Fatalf("token create: %s", tokErr)
	}
	daemonToken := strings.TrimSpace(tokOut)
	m := svcFPRE.FindStringSubmatch(tokErr)
	if m == nil || !strings.Contains(tokErr, "dockca daemon setup localhost --ca-url "+caURL) {
		t.Fatalf("token create hints:\n%s", tokErr)
	}
	fp := m[1]

	// A provisioning host with its own (empty) home enrolls the daemon.
	hostHome := t.TempDir()
	daemonDir := filepath.Join(dockerdtest.ShortTempDir(t), "tls")
	enrollVars := map[string]string{"DOCKCA_HOME": hostHome}
	if _, e, code := svcRun(t, enrollVars, "enroll", "--ca-url", caURL, "--token", daemonToken, "--fingerprint", fp, "--cert-dir", daemonDir); code != 0 {
		t.Fatalf("enroll daemon: %s", e)
	}
	if store.Exists(hostHome) {
		t.Fatal("remote enrollment created a dockca.db")
	}
	// Replay, and a wrong fingerprint, are refused.
	if _, e, code := svcRun(t, enrollVars, "enroll", "--ca-url", caURL, "--token", daemonToken, "--fingerprint", fp, "--cert-dir", t.TempDir()); code != 1 || !strings.Contains(e, "already been used") {
		t.Fatalf("replayed token: %d %s", code, e)
	}
	tokOut, _, _ = svcRun(t, vars, "token", "create", "--kind", "client", "--role", "admin", "alice")
	clientToken := strings.TrimSpace(tokOut)
	wrong := strings.Repeat("0", 64)
	if _, e, code := svcRun(t, enrollVars, "enroll", "--ca-url", caURL, "--token", clientToken, "--fingerprint", wrong, "--cert-dir", t.TempDir()); code != 1 || !strings.Contains(e, "does not match") {
		t.Fatalf("wrong fingerprint: %d %s", code, e)
	}
	if _, e, code := svcRun(t, enrollVars, "enroll", "--ca-url", caURL, "--token", clientToken, "--cert-dir", t.TempDir()); code != 1 || !strings.Contains(e, "no --fingerprint") {
		t.Fatalf("no fingerprint, no terminal: %d %s", code, e)
	}

	d := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true,
		CACert: filepath.Join(daemonDir, "ca.pem"), Cert: filepath.Join(daemonDir, "server-cert.pem"), Key: filepath.Join(daemonDir, "server-key.pem")})

	// A developer laptop: separate home, separate DOCKER_CONFIG.
	clientDir := filepath.Join(t.TempDir(), "docker-certs")
	if _, e, code := svcRun(t, map[string]string{"DOCKCA_HOME": t.TempDir()}, "enroll", "--ca-url", caURL, "--token", clientToken, "--fingerprint", fp, "--cert-dir", clientDir); code != 0 {
		t.Fatalf("enroll client: %s", e)
	}
	dockerEnv := []string{"DOCKER_HOST=tcp://" + d.Addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + clientDir, "DOCKER_CONFIG=" + t.TempDir()}
	if out, err := dockerdtest.Docker(t, dockerEnv, "version", "--format", "{{.Server.Version}}"); err != nil {
		t.Fatalf("docker version with an enrolled certificate: %v\n%s", err, out)
	}

	// dockca audit takes the root from the service: the daemon is recognised.
	if out, e, code := svcRun(t, enrollVars, "audit", "--json", "--ca-url", caURL, "--fingerprint", fp, d.Addr); code != 0 || !strings.Contains(out, `"mtls-ok"`) {
		t.Fatalf("audit with --ca-url: exit %d\n%s%s", code, out, e)
	}

	// Remote 'context add' from another laptop: separate home and
	// DOCKER_CONFIG, key made there, no CA database created.
	tokOut, _, _ = svcRun(t, vars, "token", "create", "--kind", "client", "--role", "readonly", "bob")
	bobToken := strings.TrimSpace(tokOut)
	laptop := map[string]string{"DOCKCA_HOME": t.TempDir()}
	bobCfg := t.TempDir()
	if res, e, code := svcRun(t, laptop, "context", "add", "bob", "--host", "tcp://"+d.Addr, "--ca-url", caURL, "--token", bobToken,
		"--fingerprint", fp, "--docker-config", bobCfg); code != 0 {
		t.Fatalf("remote context add: %s %s", res, e)
	}
	if store.Exists(laptop["DOCKCA_HOME"]) {
		t.Fatal("remote context add created a dockca.db")
	}
	bobEnv := []string{"DOCKER_CONFIG=" + bobCfg}
	if out, err := dockerdtest.Docker(t, bobEnv, "--context", "bob", "version", "--format", "{{.Server.Os}}"); err != nil || strings.TrimSpace(out) != "linux" {
		t.Fatalf("docker --context bob: %v\n%s", err, out)
	}
	if out, _ := dockerdtest.Docker(t, bobEnv, "context", "inspect", "bob"); !strings.Contains(out, caURL) {
		t.Errorf("the context's metadata does not record the CA URL:\n%s", out)
	}
	// The token decides the identity: a conflicting --role is refused
	// before anything is sent.
	if _, e, code := svcRun(t, laptop, "context", "add", "bob2", "--host", "tcp://"+d.Addr, "--ca-url", caURL, "--token", bobToken,
		"--fingerprint", fp, "--role", "admin", "--docker-config", bobCfg); code != 1 || !strings.Contains(e, "role") {
		t.Fatalf("conflicting role: %d %s", code, e)
	}
	// Renewal of a remote context goes to the service over mutual TLS.
	before, _, _ := svcRun(t, laptop, "context", "ls", "--json", "--docker-config", bobCfg)
	if out, e, code := svcRun(t, laptop, "context", "renew", "bob", "--force", "--docker-config", bobCfg); code != 0 {
		t.Fatalf("remote context renew: %s %s", out, e)
	}
	after, _, _ := svcRun(t, laptop, "context", "ls", "--json", "--docker-config", bobCfg)
	if before == after || !strings.Contains(after, `"role": "readonly"`) {
		t.Fatalf("context ls before/after renew:\n%s\n%s", before, after)
	}
	if out, err := dockerdtest.Docker(t, bobEnv, "--context", "bob", "version", "--format", "{{.Server.Os}}"); err != nil {
		t.Fatalf("docker --context bob after renew: %v\n%s", err, out)
	}
	if store.Exists(laptop["DOCKCA_HOME"]) {
		t.Fatal("remote context renew created a dockca.db")
	}

	// Remote 'daemon setup' for a provisioning script, against a temp root;
	// a second run (no new token needed) changes nothing.
	tokOut, _, _ = svcRun(t, vars, "token", "create", "--kind", "daemon", "--san", "127.0.0.1", "build1.example")
	setupToken := strings.TrimSpace(tokOut)
	root := t.TempDir()
	setup := []string{"daemon", "setup", "build1.example", "--san", "127.0.0.1", "--listen", "tcp://127.0.0.1:2376",
		"--tls-dir", filepath.Join(root, "tls"), "--config", filepath.Join(root, "daemon.json"), "--systemd-dir", filepath.Join(root, "systemd"),
		"--ca-url", caURL, "--token", setupToken, "--fingerprint", fp}
	if out, e, code := svcRun(t, laptop, setup...); code != 0 || !strings.Contains(out, "restart") {
		t.Fatalf("remote daemon setup: %s %s", out, e)
	}
	written, _ := os.ReadFile(filepath.Join(root, "tls", "server-cert.pem"))
	if out, e, code := svcRun(t, laptop, setup...); code != 0 {
		t.Fatalf("second remote daemon setup: %s %s", out, e)
	}
	if again, _ := os.ReadFile(filepath.Join(root, "tls", "server-cert.pem")); !bytes.Equal(again, written) {
		t.Fatal("second remote daemon setup replaced the certificate")
	}
	if _, e, code := svcRun(t, laptop, "daemon", "setup", "other.example", "--tls-dir", filepath.Join(root, "tls2"),
		"--config", filepath.Join(root, "d2.json"), "--systemd-dir", filepath.Join(root, "s2"),
		"--ca-url", caURL, "--token", setupToken, "--fingerprint", fp); code != 1 || !strings.Contains(e, "build1.example") {
		t.Fatalf("daemon setup for a host the token does not name: %d %s", code, e)
	}

	// Renewal over mutual TLS; docker keeps working with the new certificate.
	old := tlsLeaf(t, clientDir)
	if out, e, code := svcRun(t, nil, "renew", "--cert-dir", clientDir, "--rekey", "--force"); code != 0 || !strings.Contains(out, "Renewed client alice") {
		t.Fatalf("renew: %s %s", out, e)
	}
	renewed := tlsLeaf(t, clientDir)
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("renewal did not replace the certificate")
	}
	if out, err := dockerdtest.Docker(t, dockerEnv, "version", "--format", "{{.Server.Version}}"); err != nil {
		t.Fatalf("docker version after renewal: %v\n%s", err, out)
	}

	// The admin revokes while the service runs (through the socket).
	if out, e, code := svcRun(t, vars, "revoke", "--reason", "key-compromise", pki.FormatSerial(renewed.SerialNumber)); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke via service: %s %s", out, e)
	}
	if _, e, code := svcRun(t, nil, "renew", "--cert-dir", clientDir); code != 1 || !strings.Contains(e, "revoked") {
		t.Fatalf("renew after revocation: %d %s", code, e)
	}
	dir, err := enroll.LoadDir(clientDir)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := dir.Client(nil)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := cl.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range crl.RevokedCertificateEntries {
		found = found || e.SerialNumber.Cmp(renewed.SerialNumber) == 0
	}
	if !found {
		t.Fatal("the CRL does not list the revoked serial")
	}

	// Issuance works through the service too; the key is made here.
	zedDir := filepath.Join(t.TempDir(), "zed")
	if _, e, code := svcRun(t, vars, "issue", "client", "zed", "--out", zedDir); code != 0 {
		t.Fatalf("issue while the service runs: %d %s", code, e)
	}
	opensslOut(t, "verify", "-CAfile", filepath.Join(zedDir, "ca.pem"), "-untrusted", filepath.Join(zedDir, "cert.pem"), filepath.Join(zedDir, "cert.pem"))

	// ls and show also work while the service holds the database.
	if out, e, code := svcRun(t, vars, "ls", "--json", "--status", "revoked"); code != 0 || !strings.Contains(out, pki.FormatSerial(renewed.SerialNumber)) {
		t.Fatalf("ls through the socket: %d %s %s", code, out, e)
	}
	if out, e, code := svcRun(t, vars, "show", "--pem", pki.FormatSerial(renewed.SerialNumber)); code != 0 || !strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Fatalf("show through the socket: %d %s %s", code, out, e)
	}
	if _, e, code := svcRun(t, vars, "show", "nobody-at-all"); code != 1 || !strings.Contains(e, "no certificate") {
		t.Fatalf("show of an unknown name through the socket: %d %s", code, e)
	}

	// token ls through the socket: both enrollment tokens used.
	out, e, code := svcRun(t, vars, "token", "ls", "--json")
	if code != 0 || strings.Count(out, `"status": "used"`) != 4 || strings.Contains(out, clientToken) {
		t.Fatalf("token ls: %s %s", out, e)
	}

	// /metrics scrapes.
	pool := x509.NewCertPool()
	pool.AddCert(dir.Root)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(caURL + api.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`dockca_certificates_issued_total{kind="daemon"} 2`, `dockca_certificates_renewed_total{kind="client"} 2`,
		`dockca_token_failures_total{reason="used"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// The authorization plugin in remote mode: the CRL comes from the
	// service, so a revocation reaches a daemon on another host within the
	// refresh interval.
	pluginName := "dockca-e2e-remote-" + strings.ReplaceAll(fp[:8], ":", "")
	pluginHome := t.TempDir()
	pctx, pcancel := context.WithCancel(context.Background())
	pdone := make(chan int, 1)
	go func() {
		_, perr, code := svcRunCtx(pctx, t, map[string]string{"DOCKCA_HOME": pluginHome}, "authz", "--name", pluginName,
			"--ca-url", caURL, "--fingerprint", fp, "--refresh", "300ms")
		if code != 0 {
			t.Errorf("remote authz exited %d: %s", code, perr)
		}
		pdone <- code
	}()
	defer func() { pcancel(); <-pdone }()
	waitForFile(t, "/run/docker/plugins/"+pluginName+".sock")
	pd := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, Args: []string{"--authorization-plugin=" + pluginName},
		CACert: filepath.Join(daemonDir, "ca.pem"), Cert: filepath.Join(daemonDir, "server-cert.pem"), Key: filepath.Join(daemonDir, "server-key.pem")})
	tokOut, _, _ = svcRun(t, vars, "token", "create", "--kind", "client", "--role", "readonly", "dave")
	daveDir := filepath.Join(t.TempDir(), "dave")
	if _, e, code := svcRun(t, enrollVars, "enroll", "--ca-url", caURL, "--token", strings.TrimSpace(tokOut), "--fingerprint", fp, "--cert-dir", daveDir); code != 0 {
		t.Fatalf("enroll dave: %s", e)
	}
	daveEnv := []string{"DOCKER_HOST=tcp://" + pd.Addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + daveDir, "DOCKER_CONFIG=" + t.TempDir()}
	if out, err := dockerdtest.Docker(t, daveEnv, "ps"); err != nil {
		t.Fatalf("readonly ps through the remote-mode plugin: %v\n%s", err, out)
	}
	if out, err := dockerdtest.Docker(t, daveEnv, "volume", "create", "x"); err == nil || !strings.Contains(out, "role readonly may not") {
		t.Fatalf("readonly volume create: %v\n%s", err, out)
	}
	if _, e, code := svcRun(t, vars, "revoke", pki.FormatSerial(tlsLeaf(t, daveDir).SerialNumber)); code != 0 {
		t.Fatalf("revoke dave: %s", e)
	}
	revokedAt := time.Now()
	for {
		out, err := dockerdtest.Docker(t, daveEnv, "ps")
		if err != nil && strings.Contains(out, "revoked") {
			break
		}
		if time.Since(revokedAt) > 5*time.Second {
			t.Fatalf("the remote-mode plugin did not enforce the revocation within 5 s: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("remote-mode revocation enforced after %s", time.Since(revokedAt).Round(time.Millisecond))

	// SIGTERM: the service exits 0 and releases the database.
	srv.Process.Signal(syscall.SIGTERM)
	waitErr := make(chan error, 1)
	go func() { waitErr <- srv.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("serve exit: %v\n%s", err, logs.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if out, e, code := svcRun(t, vars, "ls", "--json"); code != 0 || !strings.Contains(out, "alice") {
		t.Fatalf("database not usable after shutdown: %s", e)
	}
	if strings.Contains(logs.String(), clientToken[:40]) || strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Fatal("service logs contain a token or a key")
	}
}

func tlsLeaf(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	d, err := enroll.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d.Leaf
}
