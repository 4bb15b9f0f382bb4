package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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

	b := make([]byte, 4)
	rand.Read(b)
	name := "dockca-e2e-" + hex.EncodeToString(b)
	socket := authz.SocketPath(name)
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- r.runCtx(ctx, "--home", r.home(), "authz", "--name", name, "--audit-log", audit) }()
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
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin socket did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}

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
	raw, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	var sawDeny, sawRevoked bool
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line is not JSON: %q", line)
		}
		if e["user"] == "alice" && e["decision"] == "deny" {
			sawDeny = true
			sawRevoked = sawRevoked || strings.Contains(strings.ToLower(line), "revoked")
		}
	}
	if !sawDeny || !sawRevoked {
		t.Fatalf("audit log lacks alice's denials:\n%s", raw)
	}
	if strings.Contains(string(raw), "s3cr3t-in-body") || strings.Contains(string(raw), "/hello") {
		t.Fatalf("the audit log contains request bodies:\n%s", raw)
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
