package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// The users of issue 3, end to end through the real CLI and the real CA:
// a provisioning run of 'dockca daemon setup' against a temp root, a dockerd
// started from the daemon.json it wrote, and a developer's 'dockca context
// add' that the real docker CLI uses.
func TestDaemonSetupAndContextsEndToEnd(t *testing.T) {
	dockerdtest.Require(t)
	r := newCLI(t)
	initCA(t, r)
	root := t.TempDir()
	sock := filepath.Join(dockerdtest.ShortTempDir(t), "docker.sock")
	addr := "127.0.0.1:" + strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1"))
	config := filepath.Join(root, "etc/docker/daemon.json")
	os.MkdirAll(filepath.Dir(config), 0o755)
	os.WriteFile(config, []byte(`{"hosts": ["unix://`+sock+`"], "labels": ["team=infra"], "log-level": "warn"}`), 0o644)
	setup := []string{"daemon", "setup", "127.0.0.1", "--san", "localhost", "--listen", "tcp://" + addr,
		"--tls-dir", filepath.Join(root, "etc/docker/tls"), "--config", config,
		"--systemd-dir", filepath.Join(root, "etc/systemd/system/docker.service.d")}
	out := r.ok(setup...)
	if !strings.Contains(out, "restart") {
		t.Errorf("setup does not say dockerd must be restarted:\n%s", out)
	}
	var cfg map[string]any
	b, _ := os.ReadFile(config)
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["tlsverify"] != true || cfg["log-level"] != "warn" || len(cfg["hosts"].([]any)) != 2 {
		t.Fatalf("merged daemon.json: %s", b)
	}
	if _, err := os.Stat(config + ".bak"); err != nil {
		t.Errorf("no daemon.json.bak: %v", err)
	}
	dropIn, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/docker.service.d/dockca.conf"))
	if !strings.Contains(string(dropIn), "ExecStart=\nExecStart=/usr/bin/dockerd") {
		t.Errorf("drop-in:\n%s", dropIn)
	}
	if fi, _ := os.Stat(filepath.Join(root, "etc/docker/tls/server-key.pem")); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server key mode: %v", fi)
	}
	// Idempotent: the second run issues nothing and changes nothing.
	before := listJSON(t, r)
	r.ok(setup...)
	if after := listJSON(t, r); len(after) != len(before) {
		t.Fatalf("second setup issued a certificate (%d -> %d)", len(before), len(after))
	}
	if again, _ := os.ReadFile(config); string(again) != string(b) {
		t.Fatal("second setup changed daemon.json")
	}

	dockerdtest.Start(t, dockerdtest.Options{ConfigFile: config, Socket: sock})

	dockerCfg := t.TempDir()
	os.WriteFile(filepath.Join(dockerCfg, "config.json"), []byte(`{"auths": {"registry.example": {"auth": "dXNlcjpwYXNz"}}, "credsStore": "", "psFormat": "{{.ID}}"}`), 0o600)
	denv := []string{"DOCKER_CONFIG=" + dockerCfg}
	r.ok("context", "add", "prod", "--host", "tcp://"+addr, "--role", "operator", "--description", "prod daemon", "--docker-config", dockerCfg, "--use")
	out, err := dockerdtest.Docker(t, denv, "--context", "prod", "version", "--format", "{{.Server.Os}}")
	if err != nil || strings.TrimSpace(out) != "linux" {
		t.Fatalf("docker --context prod version: %v\n%s", err, out)
	}
	// --use made it current and kept the other keys of config.json.
	out, err = dockerdtest.Docker(t, denv, "version", "--format", "{{.Server.Os}}")
	if err != nil || strings.TrimSpace(out) != "linux" {
		t.Fatalf("current context: %v\n%s", err, out)
	}
	var dc map[string]any
	b, _ = os.ReadFile(filepath.Join(dockerCfg, "config.json"))
	json.Unmarshal(b, &dc)
	if dc["currentContext"] != "prod" || dc["auths"] == nil || dc["psFormat"] != "{{.ID}}" {
		t.Fatalf("config.json after --use: %s", b)
	}
	out, _ = dockerdtest.Docker(t, denv, "context", "ls")
	if !strings.Contains(out, "prod") || !strings.Contains(out, "prod daemon") {
		t.Errorf("docker context ls:\n%s", out)
	}
	out, _ = dockerdtest.Docker(t, denv, "context", "inspect", "prod")
	if !strings.Contains(out, "tcp://"+addr) || !strings.Contains(out, `"dockca"`) {
		t.Errorf("docker context inspect:\n%s", out)
	}
	// The certificate is in the CA's inventory with its role.
	var serial string
	for _, e := range listJSON(t, r, "--kind", "client") {
		if e["name"] == "prod" && e["role"] == "operator" {
			serial = e["serial"].(string)
		}
	}
	if serial == "" {
		t.Fatal("context add's certificate is not in dockca ls")
	}

	// env works for tools that ignore contexts.
	out = r.ok("context", "env", "prod", "--docker-config", dockerCfg)
	cmd := exec.Command("sh", "-c", out+"\ndocker version --format '{{.Server.Os}}'")
	cmd.Env = dockerdtest.CleanEnv("DOCKER_CONFIG=" + t.TempDir())
	if vout, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(vout)) != "linux" {
		t.Fatalf("env output does not work for docker version: %v\n%s\n%s", err, out, vout)
	}

	// renew: the context keeps working with a new serial.
	r.ok("context", "renew", "prod", "--force", "--docker-config", dockerCfg)
	var ls []map[string]any
	json.Unmarshal([]byte(r.ok("context", "ls", "--json", "--docker-config", dockerCfg)), &ls)
	if len(ls) != 1 || ls[0]["serial"] == serial || ls[0]["status"] != "valid" || ls[0]["role"] != "operator" {
		t.Fatalf("context ls after renew: %v (old serial %s)", ls, serial)
	}
	newSerial := ls[0]["serial"].(string)
	out, err = dockerdtest.Docker(t, denv, "--context", "prod", "version", "--format", "{{.Server.Os}}")
	if err != nil {
		t.Fatalf("renewed context: %v\n%s", err, out)
	}

	// Foreign contexts are never clobbered, invalid names refused.
	if out, err := dockerdtest.Docker(t, denv, "context", "create", "theirs", "--docker", "host=tcp://"+addr); err != nil {
		t.Fatalf("docker context create: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"context", "add", "theirs", "--host", "tcp://" + addr},
		{"context", "rm", "theirs"},
		{"context", "add", "bad/name", "--host", "tcp://" + addr},
		{"context", "add", "prod", "--host", "tcp://" + addr},
		{"context", "add", "x", "--host", "http://" + addr},
		{"context", "add", "y", "--host", "tcp://127.0.0.1:1"},
	} {
		n := len(listJSON(t, r))
		res := r.run(append(args, "--docker-config", dockerCfg)...)
		if res.code == 0 || strings.Count(res.err, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q", args, res.code, res.err)
		}
		if len(listJSON(t, r)) != n {
			t.Errorf("%v issued a certificate", args)
		}
	}
	out, _ = dockerdtest.Docker(t, denv, "context", "inspect", "theirs")
	if !strings.Contains(out, "tcp://"+addr) {
		t.Fatalf("foreign context changed:\n%s", out)
	}
	// A daemon.json that is not JSON is refused and left alone.
	bad := filepath.Join(t.TempDir(), "daemon.json")
	os.WriteFile(bad, []byte("{not json"), 0o644)
	res := r.run("daemon", "setup", "127.0.0.1", "--config", bad, "--tls-dir", filepath.Join(t.TempDir(), "tls"), "--systemd-dir", t.TempDir())
	if res.code != 1 || !strings.Contains(res.err, "JSON") {
		t.Errorf("bad daemon.json: %+v", res)
	}
	if b, _ := os.ReadFile(bad); string(b) != "{not json" {
		t.Error("bad daemon.json was changed")
	}

	// rm --revoke removes the context and revokes its certificate.
	r.ok("context", "rm", "--revoke", "prod", "--docker-config", dockerCfg)
	out, _ = dockerdtest.Docker(t, denv, "context", "ls", "--format", "{{.Name}}")
	if strings.Contains(out, "prod") {
		t.Fatalf("context still listed:\n%s", out)
	}
	revoked := false
	for _, e := range listJSON(t, r, "--status", "revoked") {
		revoked = revoked || e["serial"] == newSerial
	}
	if !revoked {
		t.Fatal("rm --revoke did not revoke the context's certificate")
	}
}
