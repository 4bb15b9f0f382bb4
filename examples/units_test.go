package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	for _, c := range commentLines(t, path) {
		if strings.HasPrefix(c, "dockca ") {
			examples = append(examples, c)
		}
	}
	return examples, parseService(t, path).ExecStart
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
			// daemon setup --live-restore sets what the restart needs; after
			// enroll alone, daemon.json says nothing, and the watcher warns
			// that restarting dockerd would stop its containers.
			complaints := string(watchLog)
			if strings.Contains(provision, "enroll") {
				if !strings.Contains(complaints, "level=WARN msg=\"live-restore is off in /etc/docker/daemon.json") {
					t.Fatalf("no live-restore warning after enroll alone:\n%s", watchLog)
				}
				complaints = strings.Replace(complaints, "level=WARN msg=\"live-restore is off", "", 1)
			}
			if strings.Contains(complaints, "level=ERROR") || strings.Contains(complaints, "level=WARN") {
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

// unitService is what TestServeUnitAsWritten's systemctl emulation needs
// from a unit's [Service] section.
type unitService struct {
	User, Group, StateDirectory, StateDirectoryMode, UMask string
	Environment                                            []string
	LoadCredential                                         string // ID:PATH
	ExecStart                                              string
}

func parseService(t *testing.T, path string) unitService {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var u unitService
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "[") {
			in = line == "[Service]"
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !in || !ok || strings.HasPrefix(line, "#") {
			continue
		}
		switch k {
		case "User":
			u.User = v
		case "Group":
			u.Group = v
		case "StateDirectory":
			u.StateDirectory = v
		case "StateDirectoryMode":
			u.StateDirectoryMode = v
		case "UMask":
			u.UMask = v
		case "Environment":
			u.Environment = append(u.Environment, v)
		case "LoadCredential":
			u.LoadCredential = v
		case "ExecStart":
			u.ExecStart = v
		}
	}
	return u
}

// TestServeUnitAsWritten runs the command lines of
// serve/dockca-serve.service as written: useradd, the password installed
// from stdin, the unit copied and "systemctl enable --now" (emulated from
// the unit file: its user and group, StateDirectory, UMask, Environment,
// LoadCredential as $CREDENTIALS_DIRECTORY and ExecStart, since the tests
// run without systemd), then a token minted as the dockca user through the
// admin socket, and an enrollment with it. It runs in a private mount
// namespace over a copy of /etc and empty /var/lib and /usr/local/bin, so
// the machine is untouched. The only values changed are the listen
// address and the service's public URL, which become a loopback port.
func TestServeUnitAsWritten(t *testing.T) {
	unshare := dockerdtest.RequireCommand(t, "unshare")
	dockerdtest.RequireCommand(t, "useradd")
	dockerdtest.RequireCommand(t, "runuser")
	setpriv := dockerdtest.RequireCommand(t, "setpriv")
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount namespaces, useradd)")
	}
	bin := buildDockca(t)
	unitPath, err := filepath.Abs(filepath.Join("serve", "dockca-serve.service"))
	if err != nil {
		t.Fatal(err)
	}
	var setupLines []string
	for _, l := range []string{"useradd ", "install ", "cp dockca-serve.service ", "runuser "} {
		found := ""
		for _, c := range commentLines(t, unitPath) {
			if strings.HasPrefix(c, l) {
				found = c
			}
		}
		if found == "" {
			t.Fatalf("dockca-serve.service documents no %q line", l)
		}
		setupLines = append(setupLines, found)
	}
	u := parseService(t, unitPath)
	if u.User == "" || u.StateDirectory == "" || u.LoadCredential == "" || u.ExecStart == "" {
		t.Fatalf("unexpected unit: %+v", u)
	}
	port := strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1"))
	var exports []string
	for _, e := range u.Environment {
		k, v, _ := strings.Cut(e, "=")
		switch k {
		case "DOCKCA_LISTEN":
			v = "127.0.0.1:" + port
		case "DOCKCA_ADDRESS":
			v = "https://127.0.0.1:" + port
		}
		exports = append(exports, "export "+k+"="+v)
	}
	credID, credPath, _ := strings.Cut(u.LoadCredential, ":")
	tmp := dockerdtest.ShortTempDir(t)
	os.Chmod(tmp, 0o755)
	password := "unit-test-password-123"
	os.WriteFile(filepath.Join(tmp, "pw"), []byte(password), 0o600)

	script := `set -e
cp -a /etc "$T/etc"
mount --bind "$T/etc" /etc
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /usr/local/bin
install -m 0755 "$DOCKCA_BIN" /usr/local/bin/dockca
export PATH=/usr/local/bin:$PATH
cd "$UNIT_DIR"

# systemctl enable --now, emulated from the unit file that was installed.
systemctl() {
	[ "$*" = "enable --now dockca-serve" ] || { echo "unexpected: systemctl $*" >&2; return 1; }
	test -f /etc/systemd/system/dockca-serve.service
	install -d -m ` + u.StateDirectoryMode + ` -o ` + u.User + ` -g ` + u.Group + ` /var/lib/` + u.StateDirectory + `
	export CREDENTIALS_DIRECTORY="$T/credentials"
	install -d -m 0500 -o ` + u.User + ` "$CREDENTIALS_DIRECTORY"
	install -m 0400 -o ` + u.User + ` ` + credPath + ` "$CREDENTIALS_DIRECTORY/` + credID + `"
	(
		umask ` + u.UMask + `
		` + strings.Join(exports, "\n\t\t") + `
		exec ` + setpriv + ` --reuid=` + u.User + ` --regid=` + u.Group + ` --init-groups ` + u.ExecStart + `
	) >"$T/journal" 2>&1 &
	echo $! >"$T/serve.pid"
}

` + setupLines[0] + `
{
` + setupLines[1] + `
} <"$T/pw"
` + setupLines[2] + `
for i in $(seq 1 100); do grep -q '^Mint a one-time token' "$T/journal" && break; sleep 0.1; done
fingerprint=$(sed -n 's/^  Root fingerprint: *//p' "$T/journal")
token=$(` + setupLines[3] + `)
dockca --home "$T/laptop" enroll --ca-url https://127.0.0.1:` + port + ` --fingerprint "$fingerprint" --token "$token" --cert-dir "$T/alice"
echo "db owner: $(stat -c '%U %a' /var/lib/dockca/dockca.db)"
echo "home mode: $(stat -c '%U %a' /var/lib/dockca)"
kill -TERM "$(cat "$T/serve.pid")"
for i in $(seq 1 100); do kill -0 "$(cat "$T/serve.pid")" 2>/dev/null || break; sleep 0.1; done
`
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "bash", "-c", script)
	cmd.Env = append(dockerdtest.CleanEnv(), "DOCKCA_BIN="+bin, "T="+tmp, "UNIT_DIR="+filepath.Dir(unitPath))
	out, err := cmd.CombinedOutput()
	journal, _ := os.ReadFile(filepath.Join(tmp, "journal"))
	if err != nil || !strings.Contains(string(out), "Enrolled client alice") {
		t.Fatalf("the unit's lines: %v\n%s\n--- journal ---\n%s", err, out, journal)
	}
	for _, want := range []string{"db owner: " + u.User + " 600", "home mode: " + u.User + " 700"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("want %q:\n%s", want, out)
		}
	}
	t.Logf("lines run:\n%s\noutput:\n%s", strings.Join(setupLines, "\n"), out)
	if !strings.Contains(string(journal), "Initialised certificate authority") || strings.Contains(string(journal), password) {
		t.Errorf("journal:\n%s", journal)
	}
}

// commentLines is every command line in a unit's comments: "#   CMD"
// (three spaces), with "\" continuations joined.
func commentLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		text, ok := strings.CutPrefix(line, "#   ")
		if !ok && cur == "" {
			continue
		}
		text = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		cur += strings.TrimSuffix(text, "\\")
		if strings.HasSuffix(text, "\\") {
			cur += " "
			continue
		}
		out = append(out, cur)
		cur = ""
	}
	return out
}
