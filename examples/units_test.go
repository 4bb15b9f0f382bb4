package examples

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/internal/servetest"
)

// unitLines returns the command lines a unit file documents: each
// "#   dockca …" example in its comments (with "\" continuations joined)
// and its ExecStart.
func unitLines(t *testing.T, path string) (examples []string, execStart string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var cur string
	for sc.Scan() {
		line := sc.Text()
		if cmd, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = cmd
			continue
		}
		text := strings.TrimSpace(strings.TrimPrefix(line, "#"))
		if cur == "" && !strings.HasPrefix(text, "dockca ") {
			continue
		}
		cur += strings.TrimSuffix(text, "\\")
		if strings.HasSuffix(text, "\\") {
			cur += " "
			continue
		}
		examples = append(examples, cur)
		cur = ""
	}
	return examples, execStart
}

// TestRenewUnitAsWritten runs the command lines of
// serve/dockca-renew.service exactly as written — each way to provision
// a Docker host it documents, then the unit's ExecStart — against a real
// dockca serve, in a private mount namespace whose /etc/docker,
// /etc/systemd/system and /usr/local/bin are empty tmpfs mounts (with
// dockca installed in /usr/local/bin), so the unit's own paths are used.
// Only the placeholders are filled in: HOST, IP, the CA URL, and $TOKEN
// and $FINGERPRINT from the environment. The watcher must pass its
// start-up check and keep running, a forced renewal (what it will do when
// the certificate is due) must work, and the certificate then serves a
// real dockerd.
func TestRenewUnitAsWritten(t *testing.T) {
	dockerdtest.Require(t)
	unshare := dockerdtest.RequireCommand(t, "unshare")
	bin := buildDockca(t)
	svc := servetest.Start(t, bin)
	provisions, execStart := unitLines(t, filepath.Join("serve", "dockca-renew.service"))
	if len(provisions) != 2 || !strings.HasPrefix(execStart, "/usr/local/bin/dockca renew --watch") {
		t.Fatalf("unexpected unit: examples %q, ExecStart %q", provisions, execStart)
	}
	fill := strings.NewReplacer("https://ca.example.com:8443", svc.URL, "HOST", "localhost", "--san IP", "--san 127.0.0.1")
	for _, provision := range provisions {
		t.Run(strings.Fields(provision)[1], func(t *testing.T) {
			out := t.TempDir()
			script := `set -e
mount -t tmpfs tmpfs /etc/docker
mount -t tmpfs tmpfs /etc/systemd/system
mount -t tmpfs tmpfs /usr/local/bin
install -m 0755 "$DOCKCA_BIN" /usr/local/bin/dockca
export PATH=/usr/local/bin:$PATH
` + fill.Replace(provision) + `
set +e
timeout --preserve-status -s TERM 5 ` + execStart + ` 2>"$OUT/watch.log"
echo "watch exit $?"
# What the watcher will do when the certificate is due, done now.
dockca renew --cert-dir /etc/docker/tls --force && echo "renew ok"
cp -a /etc/docker/tls "$OUT/tls"
`
			cmd := exec.Command(unshare, "--mount", "--propagation", "private", "bash", "-c", script)
			cmd.Env = append(dockerdtest.CleanEnv(), "DOCKCA_BIN="+bin, "OUT="+out, "DOCKCA_HOME="+t.TempDir(),
				"TOKEN="+svc.Token(t, "--kind", "daemon", "--san", "127.0.0.1", "localhost"), "FINGERPRINT="+svc.FP)
			stdout, err := cmd.CombinedOutput()
			watchLog, _ := os.ReadFile(filepath.Join(out, "watch.log"))
			if err != nil || !strings.Contains(string(stdout), "watch exit 0") || !strings.Contains(string(stdout), "renew ok") ||
				!strings.Contains(string(watchLog), "next renewal scheduled") {
				t.Fatalf("%s then the unit: %v\n%s\n--- watch log ---\n%s", provision, err, stdout, watchLog)
			}
			if strings.Contains(string(watchLog), "level=ERROR") || strings.Contains(string(watchLog), "level=WARN") {
				t.Fatalf("the watcher complained:\n%s", watchLog)
			}
			tlsDir := filepath.Join(out, "tls")
			d := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(tlsDir, "ca.pem"),
				Cert: filepath.Join(tlsDir, "server-cert.pem"), Key: filepath.Join(tlsDir, "server-key.pem")})
			clientDir := filepath.Join(t.TempDir(), "client")
			enroll := exec.Command(bin, "--home", t.TempDir(), "enroll", "--ca-url", svc.URL, "--fingerprint", svc.FP,
				"--cert-dir", clientDir, "--token", svc.Token(t, "--kind", "client", "ops"))
			if out, err := enroll.CombinedOutput(); err != nil {
				t.Fatalf("enroll a client: %v\n%s", err, out)
			}
			env := []string{"DOCKER_HOST=tcp://" + d.Addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + clientDir, "DOCKER_CONFIG=" + t.TempDir()}
			if out, err := dockerdtest.Docker(t, env, "ps"); err != nil {
				t.Fatalf("docker ps against the provisioned certificate: %v\n%s", err, out)
			}
		})
	}
}
