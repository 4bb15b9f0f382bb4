package serve_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/serve"
)

// TestAdminSocketRefusesOtherUsers opens the socket's file permissions on
// purpose, so that only the peer-credential check stands between another
// user and the admin API, and connects as nobody.
func TestAdminSocketRefusesOtherUsers(t *testing.T) {
	// Under CI the prerequisites are installed (make test), so a missing one
	// is a failure, never a silent skip.
	skip := t.Skip
	if os.Getenv("CI") == "true" {
		skip = t.Fatal
	}
	if os.Geteuid() != 0 {
		skip("needs root to act as another user")
	}
	setpriv := dockerdtest.RequireCommand(t, "setpriv")
	curl := dockerdtest.RequireCommand(t, "curl")
	ts := startServer(t, serve.Options{})
	sock := filepath.Join(ts.home, api.SocketName)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	os.Chmod(ts.home, 0o755)
	os.Chmod(sock, 0o666)
	out, err := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", curl, "-sS", "--max-time", "5",
		"--unix-socket", sock, "http://x"+api.PathAdminTokens).CombinedOutput()
	if err == nil || strings.Contains(string(out), "[") {
		t.Fatalf("another user reached the admin API: %s", out)
	}
	// Root (the test) still can.
	out, err = exec.Command(curl, "-sS", "--max-time", "5", "--unix-socket", sock, "http://x"+api.PathAdminTokens).CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "[") {
		t.Fatalf("root refused: %v %s", err, out)
	}
}
