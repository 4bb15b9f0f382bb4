package contexts_test

import (
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/internal/testca"
)

// ca is the test CA; it implements Issuer, Revoker and StatusChecker.
type ca = *testca.CA

// tlsDaemon starts a real dockerd that requires client certificates from c.
func tlsDaemon(t *testing.T, c ca) *dockerdtest.Daemon {
	t.Helper()
	b, err := c.Issue(testca.Request{CommonName: "daemon", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: x509.ExtKeyUsageServerAuth, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"ca.pem": b.CA, "cert.pem": b.Cert, "key.pem": b.Key} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dockerdtest.Start(t, dockerdtest.Options{
		TLSVerify: true,
		CACert:    filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"),
	})
}

// docker runs the real docker CLI with an isolated DOCKER_CONFIG.
func docker(t *testing.T, cfg string, args ...string) (string, error) {
	t.Helper()
	return dockerdtest.Docker(t, []string{"DOCKER_CONFIG=" + cfg}, args...)
}

// mustDocker is docker that fails the test on error and trims output.
func mustDocker(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	out, err := docker(t, cfg, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1")))
}

func runSh(t *testing.T, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = dockerdtest.CleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("sh: %s", out)
	}
	return string(out), err
}

func dockerEnv(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	return dockerdtest.Docker(t, env, args...)
}
