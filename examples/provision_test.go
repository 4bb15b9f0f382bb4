// Package examples holds runnable example scripts; its tests run them.
package examples

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// buildDockca builds the real dockca binary (with the build tags the
// Makefile uses) so the example runs exactly as an operator would run it.
func buildDockca(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "dockca")
	out, err := exec.Command(goBin, "build", "-tags", "nobadger,nomysql,nopgx", "-o", bin, "github.com/dockca/dockca/cmd/dockca").CombinedOutput()
	if err != nil {
		t.Fatalf("build dockca: %v\n%s", err, out)
	}
	return bin
}

func provision(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"provision-daemon.sh"}, args...)...)
	cmd.Env = append(dockerdtest.CleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestProvisionDaemon runs the script twice against a temp root, then
// starts a real dockerd from what it wrote and reaches it with a client
// certificate from the same CA.
func TestProvisionDaemon(t *testing.T) {
	dockerdtest.Require(t)
	dockca := buildDockca(t)
	root := t.TempDir()
	home := filepath.Join(t.TempDir(), "ca")
	sock := filepath.Join(dockerdtest.ShortTempDir(t), "docker.sock")
	port := strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1"))
	tcp := "tcp://127.0.0.1:" + port
	config := filepath.Join(root, "etc/docker/daemon.json")
	os.MkdirAll(filepath.Dir(config), 0o755)
	// The host's own socket, so dockerd does not take /var/run/docker.sock.
	os.WriteFile(config, []byte(`{"hosts": ["unix://`+sock+`"]}`), 0o644)
	env := []string{"ROOT=" + root, "DOCKCA=" + dockca, "DOCKCA_HOME=" + home, "LISTEN=" + tcp}

	if out, err := exec.Command(dockca, "--home", home, "init", "--no-password").CombinedOutput(); err != nil {
		t.Fatalf("dockca init: %v\n%s", err, out)
	}
	out, err := provision(t, env, "127.0.0.1", "localhost")
	if err != nil || !strings.Contains(out, "would run: systemctl daemon-reload && systemctl restart docker") {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	t.Logf("first run:\n%s", out)
	for _, f := range []string{"etc/docker/tls/server-key.pem", "etc/docker/daemon.json.bak", "etc/systemd/system/docker.service.d/dockca.conf"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	written, _ := os.ReadFile(config)
	if !strings.Contains(string(written), `"live-restore": true`) {
		t.Errorf("the provisioned daemon.json does not keep containers across restarts:\n%s", written)
	}

	out, err = provision(t, env, "127.0.0.1", "localhost")
	if err != nil || !strings.Contains(out, "nothing changed, docker not restarted") {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	out, err = provision(t, append(env, "DRY_RUN=1"), "127.0.0.1", "localhost", "docker1.example")
	if err != nil || !strings.Contains(out, "would issue") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if again, _ := os.ReadFile(config); string(again) != string(written) {
		t.Fatal("dry run changed daemon.json")
	}
	if out, err := provision(t, env); err == nil || !strings.Contains(out, "usage:") {
		t.Fatalf("no HOST accepted: %v\n%s", err, out)
	}

	dockerdtest.Start(t, dockerdtest.Options{ConfigFile: config, Socket: sock})
	certs := filepath.Join(t.TempDir(), "ops")
	if out, err := exec.Command(dockca, "--home", home, "issue", "client", "ops", "--ttl", "1h", "--out", certs).CombinedOutput(); err != nil {
		t.Fatalf("dockca issue client: %v\n%s", err, out)
	}
	vout, err := dockerdtest.Docker(t, []string{"DOCKER_CONFIG=" + t.TempDir(), "DOCKER_HOST=" + tcp, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + certs},
		"version", "--format", "{{.Server.Os}}")
	if err != nil || strings.TrimSpace(vout) != "linux" {
		t.Fatalf("docker over the provisioned listener: %v\n%s", err, vout)
	}
}
