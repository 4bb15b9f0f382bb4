package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/internal/servetest"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// rotService runs `dockca serve` as its own process on a fixed address,
// so that it can be stopped for a rotation and started again at the same
// URL (which every enrolled directory and context records).
type rotService struct {
	bin, home, listen string
	vars              map[string]string
	cmd               *exec.Cmd
}

func (s *rotService) start(t *testing.T) string {
	t.Helper()
	s.cmd = exec.Command(s.bin, "serve", "--listen", s.listen)
	s.cmd.Env = append(os.Environ(), "DOCKCA_HOME="+s.home, "DOCKCA_PASSWORD="+s.vars["DOCKCA_PASSWORD"])
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = io.Discard
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := s.cmd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var url string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := svcURLRE.FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
		}
		if strings.HasPrefix(sc.Text(), "Mint a one-time token") {
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if url == "" {
		t.Fatal("dockca serve printed no URL")
	}
	return url
}

func (s *rotService) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("dockca serve did not stop")
	}
}

// TestRotateRootEndToEnd is issue 14's scenario: two real dockerds (one
// with its own TLS and the plugin, with live-restore; one behind the gate)
// and three docker contexts, through a whole root rotation. At every step
// every context reaches its daemon, and `rotate status` lists exactly the
// certificates still under the old root; after `rotate finish` a
// certificate under the old root is refused by both the plugin and the
// gate, and the container started before the rotation is still running.
func TestRotateRootEndToEnd(t *testing.T) {
	dockerdtest.Require(t)
	bin := buildDockca(t)
	home := dockerdtest.ShortTempDir(t)
	os.Remove(home) // the first start of serve initialises it
	vars := map[string]string{"DOCKCA_HOME": home, "DOCKCA_PASSWORD": "rotate-password-123"}
	svc := &rotService{bin: bin, home: home, vars: vars,
		listen: fmt.Sprintf("127.0.0.1:%d", dockerdtest.FreePort(t, "127.0.0.1"))}
	caURL := svc.start(t)

	token := func(args ...string) (string, string) {
		t.Helper()
		out, errOut, code := svcRun(t, vars, append([]string{"token", "create"}, args...)...)
		m := svcFPRE.FindStringSubmatch(errOut)
		if code != 0 || m == nil {
			t.Fatalf("token create %v: %d %s", args, code, errOut)
		}
		return strings.TrimSpace(out), m[1]
	}
	noHome := map[string]string{"DOCKCA_HOME": t.TempDir()}

	// d1: dockerd's own TLS, the plugin (local mode, on the CA's home),
	// live-restore. d2: dockerd on its unix socket only, behind the gate.
	d1Dir := filepath.Join(dockerdtest.ShortTempDir(t), "tls")
	tok, fp := token("--kind", "daemon", "--san", "127.0.0.1", "d1")
	if _, e, code := svcRun(t, noHome, "enroll", "--ca-url", caURL, "--token", tok, "--fingerprint", fp, "--cert-dir", d1Dir); code != 0 {
		t.Fatalf("enroll d1: %s", e)
	}
	d2Dir := filepath.Join(dockerdtest.ShortTempDir(t), "tls")
	tok, _ = token("--kind", "daemon", "--san", "127.0.0.1", "d2")
	if _, e, code := svcRun(t, noHome, "enroll", "--ca-url", caURL, "--token", tok, "--fingerprint", fp, "--cert-dir", d2Dir); code != 0 {
		t.Fatalf("enroll d2: %s", e)
	}
	// The first generation's intermediate and root, for its CRL later.
	gen1, err := tlsbundle.Certs(readFile(t, filepath.Join(d2Dir, "server-cert.pem")))
	if err != nil || len(gen1) != 2 {
		t.Fatalf("d2's chain: %v", err)
	}
	gen1PEM := append(pki.PEMCert(gen1[1]), readFile(t, filepath.Join(d2Dir, "ca.pem"))...)
	r := &cliRunner{t: t, env: vars}
	plugin := startAuthzPlugin(t, r)
	// d1's daemon.json says live-restore, as 'daemon setup --live-restore'
	// writes it; the renewal hook reads it there.
	d1Config := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(d1Config, []byte(`{"live-restore": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	d1 := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(d1Dir, "ca.pem"),
		Cert: filepath.Join(d1Dir, "server-cert.pem"), Key: filepath.Join(d1Dir, "server-key.pem"),
		ConfigFile: d1Config, Args: []string{"--authorization-plugin=" + plugin}})
	d2 := dockerdtest.Start(t, dockerdtest.Options{NoTCP: true})
	gateAddr := fmt.Sprintf("127.0.0.1:%d", dockerdtest.FreePort(t, "127.0.0.1"))
	// The gate in remote mode (the service's CRL and trust bundle, read
	// every second), the plugin in local mode: both modes follow the
	// rotation without a restart.
	gateRunner := &cliRunner{t: t, env: map[string]string{"DOCKCA_HOME": t.TempDir()}}
	startRotateGate(t, gateRunner, gateAddr, d2.Socket, d2Dir, "--ca-url", caURL, "--fingerprint", fp, "--refresh", "1s")

	// A container that must survive d1's restart.
	d1.ImportBusybox(t, "bb:1")
	if out, err := d1.Local(t, "run", "-d", "--name", "keeper", "--network", "none", "bb:1", "sleep", "3600"); err != nil {
		t.Fatalf("start the container: %v\n%s", err, out)
	}

	// Three contexts on a laptop: c1 and c2 reach d1, c3 reaches d2.
	cfg := t.TempDir()
	hosts := map[string]string{"c1": d1.Addr, "c2": d1.Addr, "c3": gateAddr}
	for _, name := range []string{"c1", "c2", "c3"} {
		tok, _ := token("--kind", "client", "--role", "admin", name)
		if out, e, code := svcRun(t, noHome, "context", "add", name, "--host", "tcp://"+hosts[name], "--ca-url", caURL,
			"--token", tok, "--fingerprint", fp, "--docker-config", cfg); code != 0 {
			t.Fatalf("context add %s: %s %s", name, out, e)
		}
	}
	reachAll := func(step string) {
		t.Helper()
		for _, name := range []string{"c1", "c2", "c3"} {
			if out, err := dockerdtest.Docker(t, []string{"DOCKER_CONFIG=" + cfg}, "--context", name, "ps", "-q"); err != nil {
				t.Fatalf("%s: docker --context %s ps: %v\n%s", step, name, err, out)
			}
		}
	}
	status := func(step string, want ...string) {
		t.Helper()
		out, e, code := svcRun(t, vars, "rotate", "status", "--json")
		if code != 0 {
			t.Fatalf("%s: rotate status: %s", step, e)
		}
		var st ca.RotationStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%s: rotate status --json: %v\n%s", step, err, out)
		}
		var got []string
		host, _ := os.Hostname()
		for _, d := range st.Dependents {
			if !d.OldRoot || d.NotAfter.IsZero() {
				t.Errorf("%s: dependent %+v", step, d)
			}
			// Where it went: the context its enrollment named and the
			// address it came from; a daemon's folder (dockca issue).
			want := " on " + host
			if d.Kind == pki.KindClient {
				want = "docker context " + d.Name + " on " + host + " (from 127.0.0.1)"
			}
			if !strings.Contains(d.Holder, want) {
				t.Errorf("%s: %s %s is held by %q, want %q in it", step, d.Kind, d.Name, d.Holder, want)
			}
			got = append(got, string(d.Kind)+":"+d.Name)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: rotate status lists %v, want %v\n%s", step, got, want, out)
		}
	}
	reachAll("before the rotation")
	status("before the rotation")

	// Step 1: rotate the root (the service is stopped for it and started
	// again at the same URL).
	svc.stop(t)
	if out, e, code := svcRun(t, vars, "rotate", "root", "--overlap", "7d"); code != 0 || !strings.Contains(out, "Root fingerprint") {
		t.Fatalf("rotate root: %d %s %s", code, out, e)
	}
	svc.start(t)
	time.Sleep(2 * time.Second) // the remote gate's next refresh
	reachAll("after rotate root")
	everything := []string{"daemon:d1", "daemon:d2", "client:c1", "client:c2", "client:c3"}
	status("after rotate root", everything...)
	if roots := countCerts(t, httpsGetRoots(t, caURL, filepath.Join(d2Dir, "ca.pem"))); roots != 2 {
		t.Fatalf("/v1/roots during the overlap has %d roots, want 2", roots)
	}
	// issue through the running service writes both roots too.
	issued := filepath.Join(t.TempDir(), "ops")
	if out, e, code := svcRun(t, vars, "issue", "client", "ops", "--out", issued); code != 0 {
		t.Fatalf("issue during the overlap: %s %s", out, e)
	} else if n := countCerts(t, readFile(t, filepath.Join(issued, "ca.pem"))); n != 2 || countCerts(t, readFile(t, filepath.Join(issued, "cert.pem"))) != 3 {
		t.Fatalf("issue during the overlap wrote %d roots", n)
	}
	if out, e, code := svcRun(t, vars, "revoke", "ops"); code != 0 {
		t.Fatalf("revoke ops: %s %s", out, e)
	}
	// A provisioning script pinned to the old root during the overlap:
	// daemon setup writes both roots, and its second run changes nothing.
	tok, _ = token("--kind", "daemon", "--san", "127.0.0.1", "build1")
	setupRoot := t.TempDir()
	setup := []string{"daemon", "setup", "build1", "--san", "127.0.0.1", "--listen", "tcp://127.0.0.1:2376",
		"--tls-dir", filepath.Join(setupRoot, "tls"), "--config", filepath.Join(setupRoot, "daemon.json"),
		"--systemd-dir", filepath.Join(setupRoot, "systemd"), "--live-restore", "--ca-url", caURL, "--token", tok, "--fingerprint", fp}
	if out, e, code := svcRun(t, noHome, setup...); code != 0 {
		t.Fatalf("daemon setup during the overlap: %s %s", out, e)
	}
	if n := countCerts(t, readFile(t, filepath.Join(setupRoot, "tls", "ca.pem"))); n != 2 {
		t.Fatalf("daemon setup during the overlap wrote %d roots", n)
	}
	if out, e, code := svcRun(t, noHome, setup...); code != 0 || strings.Contains(out, "issue") {
		t.Fatalf("second daemon setup during the overlap: %d %s %s", code, out, e)
	}
	if out, e, code := svcRun(t, vars, "revoke", "build1"); code != 0 {
		t.Fatalf("revoke build1: %s %s", out, e)
	}

	// One CRL per issuer: the default is the new intermediate's; the old
	// one's is served by its fingerprint and verifies with openssl against
	// the old intermediate; an unknown issuer is 404.
	requireOpenSSL(t)
	crlDir := t.TempDir()
	der, code := httpsGet(t, caURL+"/v1/crl?issuer="+pki.Fingerprint(gen1[1]), filepath.Join(d2Dir, "ca.pem"))
	if code != http.StatusOK {
		t.Fatalf("GET /v1/crl?issuer=OLD: %d %s", code, der)
	}
	os.WriteFile(filepath.Join(crlDir, "old.crl"), der, 0o600)
	os.WriteFile(filepath.Join(crlDir, "gen1.pem"), gen1PEM, 0o600)
	if out := opensslOut(t, "crl", "-inform", "DER", "-in", filepath.Join(crlDir, "old.crl"), "-CAfile", filepath.Join(crlDir, "gen1.pem"), "-noout", "-issuer"); !strings.Contains(out, "verify OK") || strings.Contains(out, "CA 2") {
		t.Fatalf("the old issuer's CRL: %s", out)
	}
	der, _ = httpsGet(t, caURL+"/v1/crl", filepath.Join(d2Dir, "ca.pem"))
	os.WriteFile(filepath.Join(crlDir, "cur.crl"), der, 0o600)
	if out := opensslOut(t, "crl", "-inform", "DER", "-in", filepath.Join(crlDir, "cur.crl"), "-noout", "-issuer"); !strings.Contains(out, "Intermediate CA 2") {
		t.Fatalf("the default CRL after rotate root: %s", out)
	}
	if _, code := httpsGet(t, caURL+"/v1/crl?issuer="+strings.Repeat("0", 64), filepath.Join(d2Dir, "ca.pem")); code != http.StatusNotFound {
		t.Fatalf("CRL of an unknown issuer: %d", code)
	}

	// Step 2: renew one daemon, the gate's: no restart, the gate reloads.
	// A restart hook is checked against daemon.json: without live-restore
	// the renewal warns that a restart would stop the containers.
	noLiveRestore := filepath.Join(t.TempDir(), "daemon.json")
	os.WriteFile(noLiveRestore, []byte(`{"log-level": "warn"}`), 0o600)
	if out, e, code := svcRun(t, nil, "renew", "--cert-dir", d2Dir, "--force", "--exec", "true", "--daemon-config", noLiveRestore); code != 0 {
		t.Fatalf("renew d2: %s %s", out, e)
	} else if strings.Count(e, "live-restore is off in "+noLiveRestore) != 2 {
		t.Fatalf("renew --exec without live-restore: want the warning at start and before the hook, got:\n%s", e)
	}
	if n := countCerts(t, readFile(t, filepath.Join(d2Dir, "ca.pem"))); n != 2 {
		t.Fatalf("renewed d2's ca.pem has %d roots, want both", n)
	}
	time.Sleep(1500 * time.Millisecond) // the gate looks at its files once a second
	reachAll("after renewing d2")       // c3 (old root) reaches d2 (new root) through the cross-signed intermediate
	status("after renewing d2", "daemon:d1", "client:c1", "client:c2", "client:c3")

	// Step 3: renew one context, c1: new root, reaching d1, whose dockerd
	// trusts only the old root (leaf → I2x → R1).
	c2Old := copyContextTLS(t, cfg, "c2")
	if out, e, code := svcRun(t, noHome, "context", "renew", "c1", "--force", "--docker-config", cfg); code != 0 {
		t.Fatalf("context renew c1: %s %s", out, e)
	}
	reachAll("after renewing c1")
	status("after renewing c1", "daemon:d1", "client:c2", "client:c3")

	// Finish is refused while anything depends on the old root, and says what.
	svc.stop(t)
	if _, e, code := svcRun(t, vars, "rotate", "finish"); code != 1 || !strings.Contains(e, `daemon "d1"`) || strings.Count(e, "\n") != 1 {
		t.Fatalf("rotate finish with dependents: %d %q", code, e)
	}
	svc.start(t)

	// Everything renewed: d1 is restarted to load its certificate, and
	// its container keeps running.
	marker := filepath.Join(t.TempDir(), "hook-ran")
	if out, e, code := svcRun(t, nil, "renew", "--cert-dir", d1Dir, "--force", "--exec", "touch "+marker, "--daemon-config", d1Config); code != 0 {
		t.Fatalf("renew d1: %s %s", out, e)
	} else if strings.Contains(e, "live-restore") {
		t.Fatalf("renew --exec warned with live-restore on:\n%s", e)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the renewal hook did not run")
	}
	d1.Restart(t) // what the hook does on a host: systemctl restart docker
	for _, name := range []string{"c2", "c3"} {
		if out, e, code := svcRun(t, noHome, "context", "renew", name, "--force", "--docker-config", cfg); code != 0 {
			t.Fatalf("context renew %s: %s %s", name, out, e)
		}
	}
	reachAll("after renewing everything")
	status("after renewing everything")
	// The superseded certificate of c2 (old root) still works until finish.
	if out, err := dockerTLS(t, d1.Addr, c2Old, "ps", "-q"); err != nil {
		t.Fatalf("old-root certificate before finish: %v\n%s", err, out)
	}

	svc.stop(t)
	if out, e, code := svcRun(t, vars, "rotate", "finish"); code != 0 || !strings.Contains(out, "Retired the old root") {
		t.Fatalf("rotate finish: %d %s %s", code, out, e)
	}
	svc.start(t)
	time.Sleep(2 * time.Second) // the remote gate's next refresh
	if n := countCerts(t, httpsGetRoots(t, caURL, filepath.Join(d2Dir, "ca.pem"))); n != 1 {
		t.Fatalf("/v1/roots after finish has %d roots, want 1", n)
	}
	reachAll("after finish")
	// A certificate under the old root: the plugin denies it at d1, and
	// the gate refuses it at the handshake.
	if out, err := dockerTLS(t, d1.Addr, c2Old, "ps", "-q"); err == nil || !strings.Contains(out, "is not issued by this host's dockca authority") {
		t.Fatalf("old-root certificate at d1 after finish: %v\n%s", err, out)
	}
	if out, err := dockerTLS(t, gateAddr, c2Old, "ps", "-q"); err == nil {
		t.Fatalf("old-root certificate at the gate after finish was accepted:\n%s", out)
	}
	// The container started before the rotation survived d1's restart.
	if out, err := d1.Local(t, "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}", "keeper"); err != nil || !strings.HasPrefix(out, "true") {
		t.Fatalf("the container did not survive the restart: %v %s", err, out)
	}
	// After the finish, renewals write the new root only.
	if out, e, code := svcRun(t, noHome, "context", "renew", "c1", "--force", "--docker-config", cfg); code != 0 {
		t.Fatalf("context renew after finish: %s %s", out, e)
	}
	if out, e, code := svcRun(t, nil, "renew", "--cert-dir", d2Dir, "--force"); code != 0 {
		t.Fatalf("renew d2 after finish: %s %s", out, e)
	} else if n := countCerts(t, readFile(t, filepath.Join(d2Dir, "ca.pem"))); n != 1 {
		t.Fatalf("d2's ca.pem after finish has %d roots, want 1", n)
	}
	time.Sleep(1500 * time.Millisecond)
	reachAll("after renewing past the finish")
}

func startRotateGate(t *testing.T, r *cliRunner, addr, sock, certDir string, extra ...string) {
	t.Helper()
	runGate(t, r, addr, append([]string{"--home", r.home(), "gate", "--listen", addr, "--docker", "unix://" + sock, "--cert-dir", certDir}, extra...)...)
}

// copyContextTLS copies a docker context's ca.pem, cert.pem and key.pem
// (docker keeps them under contexts/tls/<sha256 of the name>/docker).
func copyContextTLS(t *testing.T, cfg, name string) string {
	t.Helper()
	out, err := dockerdtest.Docker(t, []string{"DOCKER_CONFIG=" + cfg}, "context", "inspect", "-f", "{{.Storage.TLSPath}}", name)
	if err != nil {
		t.Fatalf("context inspect %s: %v %s", name, err, out)
	}
	src := filepath.Join(strings.TrimSpace(out), "docker")
	dst := t.TempDir()
	for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
		if err := os.WriteFile(filepath.Join(dst, f), readFile(t, filepath.Join(src, f)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func countCerts(t *testing.T, pemBytes []byte) int {
	t.Helper()
	return strings.Count(string(pemBytes), "-----BEGIN CERTIFICATE-----")
}

// httpsGetRoots fetches GET /v1/roots over HTTPS trusting the roots of
// caFile.
func httpsGetRoots(t *testing.T, caURL, caFile string) []byte {
	t.Helper()
	b, code := httpsGet(t, caURL+"/v1/roots", caFile)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/roots: %d", code)
	}
	return b
}

// httpsGet fetches url trusting the roots of caFile.
func httpsGet(t *testing.T, url, caFile string) ([]byte, int) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(readFile(t, caFile)) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return b, resp.StatusCode
}

// TestRotateWhileServing: every rotate command works while dockca serve
// runs for the home (bbolt, password-protected CA): through the admin
// socket, with the password the service holds, and the service serves the
// new generation (roots, service certificate, issuance) the moment the
// command returns, without a restart. Afterwards, stopped, every
// generation's keys decrypt with the CA password.
func TestRotateWhileServing(t *testing.T) {
	bin := buildDockca(t)
	home := filepath.Join(dockerdtest.ShortTempDir(t), "home")
	const pw = "rotate-while-serving-pw"
	cmd := exec.Command(bin, "--home", home, "serve", "--listen", "127.0.0.1:0", "--log-format", "json")
	cmd.Env = append(os.Environ(), "DOCKCA_PASSWORD="+pw)
	svc := servetest.Run(t, cmd, &servetest.Service{Bin: bin, Home: home})
	ctx := context.Background()
	client, err := enroll.Bootstrap(ctx, []string{svc.URL}, svc.FP)
	if err != nil {
		t.Fatal(err)
	}
	oldRoot := client.Root()
	if _, err := client.Enroll(ctx, svc.Token(t, "--kind", "client", "alice"), ""); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"DOCKCA_HOME": home} // no password: the service's is used
	run := func(want int, args ...string) (string, string) {
		t.Helper()
		out, errOut, code := svcRun(t, vars, args...)
		if code != want {
			t.Fatalf("dockca %v: exit %d, want %d\n%s%s", args, code, want, out, errOut)
		}
		return out, errOut
	}
	// served checks, with no wait, that the service hands out exactly
	// roots and presents a certificate each of them verifies alone.
	served := func(step string, roots ...*x509.Certificate) {
		t.Helper()
		got, chain := servedRoots(t, svc.URL), servedChain(t, svc.URL)
		if len(got) != len(roots) {
			t.Fatalf("%s: the service serves %d roots, want %d", step, len(got), len(roots))
		}
		for _, r := range roots {
			if !slices.ContainsFunc(got, r.Equal) || !verifies(chain[0], chain[1:], r, x509.ExtKeyUsageServerAuth) {
				t.Fatalf("%s: %s is not served, or the service certificate does not verify under it alone", step, r.Subject.CommonName)
			}
		}
	}
	enrollUnder := func(name string, root *x509.Certificate, chainLen int) []*x509.Certificate {
		t.Helper()
		res, err := client.Enroll(ctx, svc.Token(t, "--kind", "client", name), "")
		if err != nil {
			t.Fatalf("enroll %s: %v", name, err)
		}
		chain, err := tlsbundle.Certs([]byte(res.Resp.Chain))
		if err != nil || len(chain) != chainLen || !verifies(res.Leaf, chain[1:], root, x509.ExtKeyUsageClientAuth) {
			t.Fatalf("enroll %s: a chain of %d (want %d) that does not verify under %s alone (%v)", name, len(chain), chainLen, root.Subject.CommonName, err)
		}
		return chain
	}

	out, _ := run(0, "rotate", "root", "--overlap", "10d")
	m := regexp.MustCompile(`Root fingerprint \(SHA-256\): ([0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rotate root through the service:\n%s", out)
	}
	var newRoot *x509.Certificate
	for _, r := range servedRoots(t, svc.URL) {
		if pki.Fingerprint(r) == m[1] {
			newRoot = r
		}
	}
	if newRoot == nil {
		t.Fatalf("the service does not serve the new root %s right after rotate root", m[1])
	}
	served("rotate root", oldRoot, newRoot)
	enrollUnder("bob", newRoot, 3)
	enrollUnder("bob-old-view", oldRoot, 3)
	// alice's enrollment named no holder: the service recorded where it came from.
	if out, _ := run(0, "rotate", "status"); !strings.Contains(out, "alice") || strings.Contains(out, "bob") ||
		!strings.Contains(out, "HELD BY") || !strings.Contains(out, "from 127.0.0.1") {
		t.Fatalf("rotate status through the service:\n%s", out)
	}
	if _, errOut := run(1, "rotate", "intermediate"); !strings.Contains(errOut, "rotation is in progress") {
		t.Fatalf("rotate intermediate during the overlap: %q", errOut)
	}
	if _, errOut := run(1, "rotate", "finish"); !strings.Contains(errOut, `client "alice"`) || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("rotate finish with a dependent, through the service: %q", errOut)
	}
	if out, _ := run(0, "rotate", "finish", "--force"); !strings.Contains(out, "Forced: 1 certificates") {
		t.Fatalf("rotate finish --force through the service:\n%s", out)
	}
	served("rotate finish", newRoot)
	// The client now trusts the new root alone, as one that renewed would.
	if client, err = enroll.NewWithRoots([]string{svc.URL}, []*x509.Certificate{newRoot}); err != nil {
		t.Fatal(err)
	}
	out, _ = run(0, "rotate", "intermediate")
	m = regexp.MustCompile(`SHA-256 ([0-9a-f]{64})`).FindStringSubmatch(out)
	if chain := enrollUnder("carol", newRoot, 2); m == nil || pki.Fingerprint(chain[1]) != m[1] {
		t.Fatalf("after rotate intermediate through the service, carol's intermediate is not the new one:\n%s", out)
	}
	svc.Stop(t)
	vars["DOCKCA_PASSWORD"] = pw
	if out, _ := run(0, "check"); !strings.Contains(out, "No problems found") {
		t.Fatalf("check with the CA password after rotations through the service:\n%s", out)
	}
	vars["DOCKCA_PASSWORD"] = "not-the-password"
	if out, errOut, code := svcRun(t, vars, "check"); code == 0 {
		t.Fatalf("check with a wrong password passed:\n%s%s", out, errOut)
	}
}
