package dockerdtest

import (
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
