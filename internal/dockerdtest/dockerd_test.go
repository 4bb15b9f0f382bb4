package dockerdtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStartPlainDaemon(t *testing.T) {
	d := Start(t, Options{})
	out, err := d.Local(t, "version", "--format", "{{.Server.Version}}")
	if err != nil {
		t.Fatalf("docker version: %v\n%s", err, out)
	}
	if strings.TrimSpace(out) == "" {
		t.Fatal("docker version printed no server version")
	}
	// The plain TCP listener answers too (loopback only).
	out, err = Docker(t, []string{"DOCKER_CONFIG=" + d.Dir, "DOCKER_HOST=tcp://" + d.Addr}, "version", "--format", "{{.Server.Os}}")
	if err != nil || strings.TrimSpace(out) != "linux" {
		t.Fatalf("docker over tcp: %v %q", err, out)
	}
}

// A daemon.json that lists its own hosts runs as written: the harness must
// not add -H, which dockerd would reject as a conflict.
func TestStartWithConfigFileHosts(t *testing.T) {
	dir := ShortTempDir(t)
	sock := filepath.Join(dir, "own.sock")
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfg, []byte(`{"hosts": ["unix://`+sock+`"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	d := Start(t, Options{ConfigFile: cfg, Socket: sock})
	if d.Addr != "" || d.Socket != sock {
		t.Fatalf("addr %q socket %q", d.Addr, d.Socket)
	}
	if out, err := d.Local(t, "version", "--format", "{{.Server.Os}}"); err != nil || strings.TrimSpace(out) != "linux" {
		t.Fatalf("docker version: %v %s", err, out)
	}
}
