package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/store"
)

var regexpRootFP = regexp.MustCompile(`Root fingerprint:\s+([0-9a-f]{64})`)

// serviceProcess is dockca serve running as its own process.
type serviceProcess struct {
	url  string
	fp   string
	logs *bytes.Buffer
	cmd  *exec.Cmd
}

// startServe runs `dockca serve` on a random loopback port for home and
// waits until it serves.
func startServe(t *testing.T, bin, home, password string, extra ...string) *serviceProcess {
	t.Helper()
	srv := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json"}, extra...)...)
	srv.Env = append(os.Environ(), "DOCKCA_HOME="+home, "DOCKCA_PASSWORD="+password)
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sp := &serviceProcess{logs: &bytes.Buffer{}, cmd: srv}
	srv.Stderr = sp.logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := svcURLRE.FindStringSubmatch(sc.Text()); m != nil {
			sp.url = m[1]
		}
		if m := regexpRootFP.FindStringSubmatch(sc.Text()); m != nil {
			sp.fp = m[1]
		}
		if strings.HasPrefix(sc.Text(), "Mint a one-time token") {
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if sp.url == "" {
		t.Fatalf("dockca serve did not start:\n%s", sp.logs)
	}
	return sp
}

// TestEveryAdminCommandThroughTheService: with dockca serve holding the
// database, every command that needs the CA works at once through the
// admin socket (issue, sign, ls, show, revoke, crl, backup, token create
// and ls, policy, check, local-CA context add and daemon setup), and the
// service serves the stored policy at GET /v1/policy.
func TestEveryAdminCommandThroughTheService(t *testing.T) {
	requireOpenSSL(t)
	bin := buildDockca(t)
	home := dockerdtest.ShortTempDir(t)
	os.Remove(home)
	const pw = "admin-plane-password"
	vars := map[string]string{"DOCKCA_HOME": home, "DOCKCA_PASSWORD": pw}
	sp := startServe(t, bin, home, pw)
	okRun := func(args ...string) string {
		t.Helper()
		out, e, code := svcRun(t, vars, args...)
		if code != 0 {
			t.Fatalf("dockca %s: exit %d\n%s%s", strings.Join(args, " "), code, out, e)
		}
		return out
	}
	// No password is needed through the socket.
	noPW := map[string]string{"DOCKCA_HOME": home}

	// issue: the key is made here, the service signs.
	dir := t.TempDir()
	alice := filepath.Join(dir, "alice")
	if out, e, code := svcRun(t, noPW, "issue", "client", "alice", "--role", "readonly", "--out", alice); code != 0 {
		t.Fatalf("issue client through the service: %d %s %s", code, out, e)
	}
	opensslOut(t, "verify", "-CAfile", filepath.Join(alice, "ca.pem"), "-untrusted", filepath.Join(alice, "cert.pem"), "-purpose", "sslclient", filepath.Join(alice, "cert.pem"))
	if opensslOut(t, "x509", "-in", filepath.Join(alice, "cert.pem"), "-noout", "-pubkey") != opensslOut(t, "pkey", "-in", filepath.Join(alice, "key.pem"), "-pubout") {
		t.Fatal("key.pem does not match cert.pem")
	}
	if fi, err := os.Stat(filepath.Join(alice, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem mode: %v %v", fi, err)
	}
	host := filepath.Join(dir, "host")
	okRun("issue", "daemon", "docker1.example", "--san", "127.0.0.1", "--out", host)
	opensslOut(t, "x509", "-in", filepath.Join(host, "server-cert.pem"), "-noout", "-checkip", "127.0.0.1")
	// The policy still applies, before anything is written.
	if _, e, code := svcRun(t, noPW, "issue", "client", "bob", "--role", "deployer", "--out", filepath.Join(dir, "bob")); code != 1 || !strings.Contains(e, `unknown role "deployer"`) {
		t.Fatalf("unknown role through the service: %d %s", code, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "bob")); err == nil {
		t.Fatal("a refused issue wrote files")
	}

	// sign a CSR made by openssl.
	key, csr := filepath.Join(dir, "k.pem"), filepath.Join(dir, "r.csr")
	opensslOut(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=ci-bot")
	signed := okRun("sign", "--kind", "client", "--role", "operator", csr)
	if strings.Count(signed, "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("sign through the service:\n%s", signed)
	}

	// ls, ls --kind service (the service's own certificate), show.
	var list []map[string]any
	if err := json.Unmarshal([]byte(okRun("ls", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range list {
		kinds[e["kind"].(string)]++
	}
	if kinds["client"] != 2 || kinds["daemon"] != 1 || kinds["service"] != 1 {
		t.Fatalf("ls --json kinds: %v", kinds)
	}
	svc := okRun("ls", "--kind", "service")
	if !strings.Contains(svc, "service") || strings.Contains(svc, "alice") {
		t.Fatalf("ls --kind service:\n%s", svc)
	}
	// The record names who issued it through the socket.
	if out := okRun("show", "alice"); !strings.Contains(out, "readonly") || !strings.Contains(out, "socket:cli:") {
		t.Fatalf("show alice:\n%s", out)
	}

	// revoke, then the CRL (through the service) lists it; openssl agrees.
	if out := okRun("revoke", "--reason", "key-compromise", "alice"); !strings.Contains(out, "revoked") {
		t.Fatalf("revoke:\n%s", out)
	}
	crlFile := filepath.Join(dir, "crl.pem")
	okRun("crl", "--pem", "--out", crlFile)
	chain := filepath.Join(dir, "chain.pem")
	root, _ := os.ReadFile(filepath.Join(alice, "ca.pem"))
	certs, _ := os.ReadFile(filepath.Join(alice, "cert.pem"))
	os.WriteFile(chain, append(root, certs[strings.Index(string(certs), "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n"):]...), 0o600)
	res, _ := exec.Command("openssl", "verify", "-crl_check", "-CAfile", chain, "-CRLfile", crlFile, filepath.Join(alice, "cert.pem")).CombinedOutput()
	if !strings.Contains(string(res), "certificate revoked") {
		t.Fatalf("openssl verify -crl_check of a revoked certificate:\n%s", res)
	}

	// backup streams a consistent copy that is a working home.
	copyHome := t.TempDir()
	okRun("backup", filepath.Join(copyHome, "dockca.db"))
	copyVars := map[string]string{"DOCKCA_HOME": copyHome, "DOCKCA_PASSWORD": pw}
	out, e, code := svcRun(t, copyVars, "ls", "--json")
	if code != 0 || !strings.Contains(out, "ci-bot") || !strings.Contains(out, `"revoked"`) {
		t.Fatalf("ls on the backup: %d %s %s", code, out, e)
	}
	if out, e, code := svcRun(t, copyVars, "check"); code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("check of the backup: %d %s %s", code, out, e)
	}

	// policy set/show through the service; its roles can then be issued
	// and minted, and GET /v1/policy serves it with an ETag.
	policy, err := os.ReadFile("../../authz/testdata/policies/custom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, e, code := svcRun(t, noPW, "policy", "set", "../../authz/testdata/policies/invalid-cycle.yaml"); code != 1 || !strings.Contains(e, "invalid policy") {
		t.Fatalf("invalid policy: %d %s", code, e)
	}
	if _, e, code := svcRun(t, noPW, "policy", "show"); code != 0 || !strings.Contains(e, "No policy is stored") {
		t.Fatalf("policy show without a policy: %d %s", code, e)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 10 * time.Second}
	if resp, err := hc.Get(sp.url + api.PathPolicy); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /v1/policy without a stored policy: %v %v", resp, err)
	}
	okRun("policy", "set", "../../authz/testdata/policies/custom.yaml")
	if got := okRun("policy", "show"); got != string(policy) {
		t.Fatalf("policy show:\n%s", got)
	}
	okRun("issue", "client", "bob", "--role", "deployer", "--out", filepath.Join(dir, "bob"))
	if out := opensslOut(t, "x509", "-in", filepath.Join(dir, "bob", "cert.pem"), "-noout", "-subject"); !strings.Contains(out, "OU=deployer") && !strings.Contains(out, "OU = deployer") {
		t.Fatalf("bob's certificate: %s", out)
	}
	resp, err := hc.Get(sp.url + api.PathPolicy)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || string(body) != string(policy) || etag == "" || resp.Header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("GET /v1/policy: %d %q %q", resp.StatusCode, etag, body)
	}
	req, _ := http.NewRequest(http.MethodGet, sp.url+api.PathPolicy, nil)
	req.Header.Set("If-None-Match", etag)
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("GET /v1/policy with If-None-Match: %v %v", resp, err)
	}

	// token create: one, a fleet by arguments, a fleet from a file and
	// from stdin, JSON; all through the socket; token ls lists them.
	one := strings.TrimSpace(okRun("token", "create", "--kind", "client", "--role", "deployer", "carol"))
	if strings.Count(one, ".") != 2 {
		t.Fatalf("a single token: %q", one)
	}
	fleet := okRun("token", "create", "--kind", "client", "--role", "readonly", "dan", "erin", "fay")
	lines := strings.Split(strings.TrimSpace(fleet), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "dan ey") || !strings.HasPrefix(lines[2], "fay ey") {
		t.Fatalf("fleet output:\n%s", fleet)
	}
	names := filepath.Join(dir, "names")
	os.WriteFile(names, []byte("# build agents\nci-1\n\nci-2\n"), 0o600)
	var js []struct {
		Name    string    `json:"name"`
		Token   string    `json:"token"`
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal([]byte(okRun("token", "create", "--kind", "client", "--from-file", names, "--json")), &js); err != nil || len(js) != 2 || js[1].Name != "ci-2" || js[0].Expires.IsZero() || js[0].Token == "" {
		t.Fatalf("--from-file --json: %v %+v", err, js)
	}
	if _, e, code := svcRun(t, noPW, "token", "create", "--kind", "client", "ok-name", "bad name!"); code != 1 || !strings.Contains(e, "bad name!") {
		t.Fatalf("a fleet with a bad name: %d %s", code, e)
	}
	var toks []map[string]any
	if err := json.Unmarshal([]byte(okRun("token", "ls", "--json")), &toks); err != nil || len(toks) != 6 {
		t.Fatalf("token ls: %v %d", err, len(toks))
	}
	// The fleet token works at the service.
	if _, e, code := svcRun(t, map[string]string{"DOCKCA_HOME": t.TempDir()}, "enroll", "--ca-url", sp.url, "--token", js[0].Token,
		"--fingerprint", sp.fp, "--cert-dir", filepath.Join(dir, "ci1")); code != 0 {
		t.Fatalf("enroll with a fleet token: %s", e)
	}

	// context add and daemon setup with the local CA (this home) go
	// through the service too.
	cfg := t.TempDir()
	okRun("context", "add", "laptop", "--host", "tcp://127.0.0.1:2376", "--role", "deployer", "--no-check", "--docker-config", cfg)
	if out := okRun("context", "ls", "--json", "--docker-config", cfg); !strings.Contains(out, "deployer") || !strings.Contains(out, `"valid"`) {
		t.Fatalf("context ls:\n%s", out)
	}
	okRun("context", "renew", "laptop", "--docker-config", cfg)
	// context ls learns revocation from the service as well.
	okRun("context", "rm", "--revoke", "laptop", "--docker-config", cfg)
	if out := okRun("ls", "--status", "revoked"); !strings.Contains(out, "laptop") {
		t.Fatalf("context rm --revoke through the service:\n%s", out)
	}
	etc := t.TempDir()
	okRun("daemon", "setup", "dockerhost", "--san", "127.0.0.1", "--tls-dir", filepath.Join(etc, "tls"),
		"--config", filepath.Join(etc, "daemon.json"), "--systemd-dir", filepath.Join(etc, "systemd"))
	opensslOut(t, "verify", "-CAfile", filepath.Join(etc, "tls", "ca.pem"), "-untrusted", filepath.Join(etc, "tls", "server-cert.pem"), filepath.Join(etc, "tls", "server-cert.pem"))

	// check through the service, as text and JSON.
	if out := okRun("check"); !strings.Contains(out, "No problems found") || !strings.Contains(out, "dockca serve started") {
		t.Fatalf("check through the service:\n%s", out)
	}
	var rep struct {
		Certificates int              `json:"certificates"`
		Problems     []map[string]any `json:"problems"`
	}
	if err := json.Unmarshal([]byte(okRun("check", "--json")), &rep); err != nil || rep.Certificates < 7 || rep.Problems == nil || len(rep.Problems) != 0 {
		t.Fatalf("check --json: %v %+v", err, rep)
	}

	if store.Exists(filepath.Join(dir, "ci1")) {
		t.Fatal("enrollment created a database")
	}

	// A service killed outright leaves a stale socket: commands notice at
	// once (the connection is refused) and use the database again.
	sp.cmd.Process.Kill()
	sp.cmd.Wait()
	if _, err := os.Lstat(filepath.Join(home, api.SocketName)); err != nil {
		t.Fatalf("no stale socket to test with: %v", err)
	}
	if out := okRun("ls", "--status", "revoked"); !strings.Contains(out, "alice") {
		t.Fatalf("ls after the service was killed:\n%s", out)
	}
	if out := okRun("check"); !strings.Contains(out, "decrypted with the password and matched") {
		t.Fatalf("check of the database after the service was killed:\n%s", out)
	}
}
