package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// dockerTLS runs the real docker CLI against addr with the client files in
// certDir, the DOCKER_CERT_PATH layout dockca writes.
func dockerTLS(t *testing.T, addr, certDir string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{
		"--tlsverify",
		"--tlscacert", filepath.Join(certDir, "ca.pem"),
		"--tlscert", filepath.Join(certDir, "cert.pem"),
		"--tlskey", filepath.Join(certDir, "key.pem"),
		"-H", "tcp://" + addr,
	}, args...)
	return dockerdtest.Docker(t, []string{"DOCKER_CONFIG=" + t.TempDir()}, full...)
}

// The promise of the core: a real dockerd started with dockca's daemon
// files accepts dockca client certificates, refuses certificates from any
// other CA, and a client refuses a daemon whose names do not match.
func TestEndToEndWithRealDockerd(t *testing.T) {
	dockerdtest.Require(t)
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	daemonDir := filepath.Join(dir, "daemon")
	r.ok("issue", "daemon", "127.0.0.1", "--san", "localhost", "--out", daemonDir)
	d := dockerdtest.Start(t, dockerdtest.Options{
		TLSVerify: true,
		CACert:    filepath.Join(daemonDir, "ca.pem"),
		Cert:      filepath.Join(daemonDir, "server-cert.pem"),
		Key:       filepath.Join(daemonDir, "server-key.pem"),
	})

	alice := filepath.Join(dir, "alice")
	r.ok("issue", "client", "alice", "--out", alice)
	out, err := dockerTLS(t, d.Addr, alice, "version", "--format", "{{.Server.Version}}")
	if err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("dockca client certificate refused: %v\n%s", err, out)
	}

	// A client certificate from another CA (a second dockca home) is
	// refused by the daemon, even with our root in the client's ca.pem.
	other := newCLI(t)
	initCA(t, other)
	mallory := filepath.Join(dir, "mallory")
	other.ok("issue", "client", "mallory", "--out", mallory)
	out, err = dockerdtest.Docker(t, []string{"DOCKER_CONFIG=" + t.TempDir()},
		"--tlsverify", "--tlscacert", filepath.Join(alice, "ca.pem"),
		"--tlscert", filepath.Join(mallory, "cert.pem"), "--tlskey", filepath.Join(mallory, "key.pem"),
		"-H", "tcp://"+d.Addr, "version", "--format", "{{.Server.Version}}")
	if err == nil {
		t.Fatalf("a foreign client certificate reached the daemon:\n%s", out)
	}
	t.Logf("foreign client refused: %s", out)
	if !strings.Contains(out, "bad certificate") && !strings.Contains(out, "unknown certificate authority") {
		t.Errorf("refusal is not the daemon rejecting the certificate: %s", out)
	}

	// A daemon certificate whose names do not match the address the client
	// dials is refused by the client.
	wrongDir := filepath.Join(dir, "wrong")
	r.ok("issue", "daemon", "wrong.example", "--out", wrongDir)
	d2 := dockerdtest.Start(t, dockerdtest.Options{
		TLSVerify: true,
		CACert:    filepath.Join(wrongDir, "ca.pem"),
		Cert:      filepath.Join(wrongDir, "server-cert.pem"),
		Key:       filepath.Join(wrongDir, "server-key.pem"),
	})
	out, err = dockerTLS(t, d2.Addr, alice, "version", "--format", "{{.Server.Version}}")
	if err == nil {
		t.Fatalf("client accepted a daemon certificate for another name:\n%s", out)
	}
	t.Logf("mismatched daemon refused: %s", out)
	if !strings.Contains(out, "doesn't contain any IP SANs") && !strings.Contains(out, "valid for") {
		t.Errorf("refusal does not explain the name mismatch: %s", out)
	}
}
