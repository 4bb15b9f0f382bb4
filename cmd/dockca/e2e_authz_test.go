package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/internal/dockerdtest"
)

// The authorization plugin through the CLI, in local mode, against a real
// dockerd: roles decide, and 'dockca revoke' is enforced on the very next
// request while other certificates keep working.
func TestAuthzPluginEndToEnd(t *testing.T) {
	dockerdtest.Require(t)
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	r.ok("issue", "daemon", "127.0.0.1", "--out", filepath.Join(dir, "daemon"))
	for name, role := range map[string]string{"alice": "readonly", "bob": "operator", "carol": "admin"} {
		r.ok("issue", "client", name, "--role", role, "--out", filepath.Join(dir, name))
	}

	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	name := startAuthzPlugin(t, r, "--audit-log", audit)

	dd := filepath.Join(dir, "daemon")
	d := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(dd, "ca.pem"),
		Cert: filepath.Join(dd, "server-cert.pem"), Key: filepath.Join(dd, "server-key.pem"),
		Args: []string{"--authorization-plugin=" + name}})
	as := func(who string, args ...string) (string, error) {
		return dockerTLS(t, d.Addr, filepath.Join(dir, who), args...)
	}
	allow := func(who string, args ...string) {
		t.Helper()
		if out, err := as(who, args...); err != nil {
			t.Fatalf("%s: docker %s: %v\n%s", who, strings.Join(args, " "), err, out)
		}
	}
	deny := func(who, want string, args ...string) {
		t.Helper()
		out, err := as(who, args...)
		if err == nil || !strings.Contains(out, "authorization denied by plugin "+name) || !strings.Contains(out, want) {
			t.Fatalf("%s: docker %s: want denial %q, got %v\n%s", who, strings.Join(args, " "), want, err, out)
		}
	}

	// A local image without a registry, over the unix socket (local root).
	img := t.TempDir()
	os.WriteFile(filepath.Join(img, "hello"), []byte("hi\n"), 0o644)
	imp := exec.Command("sh", "-c", `tar -C "$1" -c . | docker import - dockca-e2e:1`, "sh", img)
	imp.Env = dockerdtest.CleanEnv("DOCKER_HOST=unix://"+d.Socket, "DOCKER_CONFIG="+t.TempDir())
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("docker import over the socket: %v\n%s", err, out)
	}

	allow("alice", "ps")
	allow("alice", "volume", "ls")
	deny("alice", "role readonly may not POST /volumes/create", "volume", "create", "ro-vol")
	allow("bob", "volume", "create", "op-vol")
	allow("bob", "create", "--name", "plain", "-e", "API_TOKEN=s3cr3t-in-body", "dockca-e2e:1", "/hello")
	deny("bob", "Privileged", "create", "--privileged", "dockca-e2e:1", "/hello")
	deny("bob", "/", "create", "-v", "/:/host", "dockca-e2e:1", "/hello")
	allow("carol", "create", "--privileged", "dockca-e2e:1", "/hello")

	// Revocation through the CLI, effective on the next request.
	out := r.ok("revoke", "--reason", "key-compromise", "alice")
	if !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %s", out)
	}
	deny("alice", "was revoked", "ps")
	deny("alice", "key-compromise", "volume", "ls")
	allow("bob", "ps")
	allow("carol", "ps")

	// The audit log holds the decisions, and never a request body.
	raw, entries := readAuditLog(t, audit)
	var sawDeny, sawRevoked bool
	for _, e := range entries {
		if e["user"] == "alice" && e["decision"] == "deny" {
			sawDeny = true
			sawRevoked = sawRevoked || strings.Contains(strings.ToLower(fmt.Sprint(e["rule"], e["reason"])), "revoked")
		}
	}
	if !sawDeny || !sawRevoked {
		t.Fatalf("audit log lacks alice's denials:\n%s", raw)
	}
	if strings.Contains(string(raw), "s3cr3t-in-body") || strings.Contains(string(raw), "/hello") {
		t.Fatalf("the audit log contains request bodies:\n%s", raw)
	}
}

// readAuditLog reads an audit log of the plugin or the gate: its text, and
// each line decoded (a line that is not JSON fails the test).
func readAuditLog(t *testing.T, path string) (string, []map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var entries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line is not JSON: %q", line)
		}
		entries = append(entries, e)
	}
	return string(raw), entries
}

// startAuthzPlugin runs `dockca authz` in local mode on r's home under a
// unique plugin name until the test ends, and returns the name.
func startAuthzPlugin(t *testing.T, r *cliRunner, args ...string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "dockca-e2e-" + hex.EncodeToString(b)
	socket := authz.SocketPath(name)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- r.runCtx(ctx, append([]string{"--home", r.home(), "authz", "--name", name}, args...)...)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case res := <-done:
			if res.code != 0 {
				t.Errorf("dockca authz exited %d: %s", res.code, res.err)
			}
		case <-time.After(10 * time.Second):
			t.Error("dockca authz did not stop")
		}
		if _, err := os.Stat(socket); err == nil {
			t.Error("the plugin socket was left behind")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			return name
		}
		select {
		case res := <-done:
			t.Fatalf("dockca authz exited %d: %s", res.code, res.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin socket did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAuthzLocalModeWhileServeRuns: with dockca serve holding the home, a
// revocation through the service is enforced by the local plugin on the
// next request, whether the plugin started before the service or after it,
// and `authz status` reports where the data comes from.
func TestAuthzLocalModeWhileServeRuns(t *testing.T) {
	dockerdtest.Require(t)
	bin := buildDockca(t)
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	r.ok("issue", "daemon", "127.0.0.1", "--out", filepath.Join(dir, "daemon"))
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		r.ok("issue", "client", n, "--role", "readonly", "--out", filepath.Join(dir, n))
	}
	before := startAuthzPlugin(t, r) // reads the database directly
	startServe(t, bin, r.home(), r.env["DOCKCA_PASSWORD"])
	waitForFile(t, filepath.Join(r.home(), "serve.sock"))
	after := startAuthzPlugin(t, r) // the database is held: the admin socket

	dd := filepath.Join(dir, "daemon")
	for _, name := range []string{before, after} {
		d := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(dd, "ca.pem"),
			Cert: filepath.Join(dd, "server-cert.pem"), Key: filepath.Join(dd, "server-key.pem"),
			Args: []string{"--authorization-plugin=" + name}})
		as := func(who string) (string, error, time.Duration) {
			start := time.Now()
			out, err := dockerTLS(t, d.Addr, filepath.Join(dir, who), "ps")
			return out, err, time.Since(start)
		}
		victim, bystander := "alice", "bob"
		if name == after {
			victim, bystander = "carol", "dave"
		}
		if out, err, took := as(victim); err != nil {
			t.Fatalf("%s before revocation: %v\n%s", victim, err, out)
		} else {
			t.Logf("plugin %s: docker ps with dockca serve holding the database took %s", name, took.Round(time.Millisecond))
		}
		// Through the running service (its admin socket), then at once:
		// no sleep, no refresh interval.
		if out := r.ok("revoke", "--reason", "key-compromise", victim); !strings.Contains(out, "revoked") {
			t.Fatalf("revoke: %s", out)
		}
		out, err, _ := as(victim)
		if err == nil || !strings.Contains(out, "was revoked at") || !strings.Contains(out, "key-compromise") {
			t.Fatalf("%s after revocation through the service: %v\n%s", victim, err, out)
		}
		if out, err, _ := as(bystander); err != nil {
			t.Fatalf("%s: %v\n%s", bystander, err, out)
		}

		res := r.run("authz", "status", "--name", name, "--json")
		if res.code != 0 {
			t.Fatalf("authz status: exit %d: %s %s", res.code, res.out, res.err)
		}
		var st authz.Status
		if err := json.Unmarshal([]byte(res.out), &st); err != nil {
			t.Fatalf("authz status --json: %v\n%s", err, res.out)
		}
		if st.Revocation.Mode != "local" || !strings.Contains(st.Revocation.Source, "admin socket") || st.Stale ||
			st.LastDecision == nil || st.Denials == 0 || strings.Join(st.Roles, ",") != "admin,operator,readonly" {
			t.Fatalf("authz status: %+v", st)
		}
	}
	res := r.run("authz", "status", "--name", before)
	if res.code != 0 || !strings.Contains(res.out, "revocation data: current, from the dockca service's admin socket") ||
		!strings.Contains(res.out, "mode:            local") || !strings.Contains(res.out, "last decision:   20") {
		t.Fatalf("authz status: exit %d\n%s%s", res.code, res.out, res.err)
	}
	res = r.run("authz", "status", "--name", "no-such-plugin")
	if res.code != 1 || !strings.Contains(res.err, "does not answer") || strings.Count(strings.TrimSpace(res.err), "\n") != 0 {
		t.Fatalf("status of a missing plugin: exit %d: %q", res.code, res.err)
	}
}

func TestAuthzInstall(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	root := t.TempDir()
	config := filepath.Join(root, "daemon.json")
	os.WriteFile(config, []byte(`{"log-level": "warn", "authorization-plugins": ["other"]}`), 0o644)
	args := []string{"authz", "install", "--config", config, "--systemd-dir", root, "--audit-log", "/var/log/dockca/audit.jsonl"}
	out := r.ok(args...)
	if !strings.Contains(out, "SIGHUP") {
		t.Errorf("install does not say to send dockerd SIGHUP:\n%s", out)
	}
	var cfg map[string]any
	b, _ := os.ReadFile(config)
	json.Unmarshal(b, &cfg)
	if cfg["log-level"] != "warn" || strings.Join(toStrings(cfg["authorization-plugins"]), ",") != "other,dockca" {
		t.Fatalf("daemon.json after install: %s", b)
	}
	if _, err := os.Stat(config + ".bak"); err != nil {
		t.Error("no daemon.json.bak")
	}
	unit, err := os.ReadFile(filepath.Join(root, "dockca-authz.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Before=docker.service", "authz", "--home " + r.home(), "--audit-log /var/log/dockca/audit.jsonl"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	out = r.ok(args...)
	if !strings.Contains(out, "already lists") {
		t.Errorf("second install:\n%s", out)
	}
	if again, _ := os.ReadFile(config); string(again) != string(b) {
		t.Fatal("second install changed daemon.json")
	}
}

func toStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			s, _ := x.(string)
			out = append(out, s)
		}
	}
	return out
}

// TestAuthzEnforcesStoredPolicy: without --policy the plugin enforces the
// policy the CA stores (dockca policy set), read from the home in local
// mode and from GET /v1/policy in remote mode, and picks up a new one
// without a restart.
func TestAuthzEnforcesStoredPolicy(t *testing.T) {
	dockerdtest.Require(t)
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policy, []byte(`roles:
  deployer:
    extends: operator
    rules:
      - {name: keep-volumes, action: deny, methods: [DELETE], paths: ["/volumes/*"], message: volumes are kept for the backup job}
`), 0o600)
	r.ok("policy", "set", policy)
	r.ok("issue", "daemon", "127.0.0.1", "--out", filepath.Join(dir, "daemon"))
	r.ok("issue", "client", "dora", "--role", "deployer", "--out", filepath.Join(dir, "dora"))
	r.ok("issue", "client", "ada", "--role", "admin", "--out", filepath.Join(dir, "ada"))
	name := startAuthzPlugin(t, r, "--refresh", "200ms")
	dd := filepath.Join(dir, "daemon")
	d := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(dd, "ca.pem"),
		Cert: filepath.Join(dd, "server-cert.pem"), Key: filepath.Join(dd, "server-key.pem"),
		Args: []string{"--authorization-plugin=" + name}})
	as := func(who string, args ...string) (string, error) {
		return dockerTLS(t, d.Addr, filepath.Join(dir, who), args...)
	}
	if out, err := as("dora", "volume", "create", "v1"); err != nil {
		t.Fatalf("deployer creates a volume: %v\n%s", err, out)
	}
	if out, err := as("dora", "volume", "rm", "v1"); err == nil || !strings.Contains(out, "volumes are kept for the backup job") {
		t.Fatalf("deployer removes a volume: %v\n%s", err, out)
	}
	res := r.run("authz", "status", "--name", name)
	if res.code != 0 || !strings.Contains(res.out, "stored by the CA (dockca policy set") || !strings.Contains(res.out, "deployer") {
		t.Fatalf("status: %d %s %s", res.code, res.out, res.err)
	}

	// A new stored policy reaches the running plugin.
	os.WriteFile(policy, []byte(`roles:
  deployer:
    extends: operator
    rules: []
`), 0o600)
	r.ok("policy", "set", policy)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := as("dora", "volume", "rm", "v1")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new stored policy was not picked up: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Remote mode: the same policy from the running service.
	bin := buildDockca(t)
	sp := startServe(t, bin, r.home(), r.env["DOCKCA_PASSWORD"])
	remoteHome := t.TempDir()
	rr := &cliRunner{t: t, env: map[string]string{"DOCKCA_HOME": remoteHome, "HOME": t.TempDir()}}
	remote := startAuthzPlugin(t, rr, "--ca-url", sp.url, "--fingerprint", sp.fp)
	st := rr.run("authz", "status", "--name", remote, "--json")
	if st.code != 0 || !strings.Contains(st.out, "/v1/policy") || !strings.Contains(st.out, `"deployer"`) {
		t.Fatalf("remote plugin status: %d %s %s", st.code, st.out, st.err)
	}
}
