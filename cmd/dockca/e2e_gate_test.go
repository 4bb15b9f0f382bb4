package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// gateEnv is a CA home, a real dockerd on its unix socket only, and
// `dockca gate` in front of it on a loopback port.
type gateEnv struct {
	r     *cliRunner
	dir   string // client and daemon certificate directories
	d     *dockerdtest.Daemon
	addr  string
	audit string
}

func startGate(t *testing.T, extra ...string) *gateEnv {
	t.Helper()
	dockerdtest.Require(t)
	g := &gateEnv{r: newCLI(t), dir: t.TempDir()}
	initCA(t, g.r)
	g.r.ok("issue", "daemon", "127.0.0.1", "--out", filepath.Join(g.dir, "daemon"))
	for name, role := range map[string]string{"alice": "readonly", "bob": "operator", "carol": "admin"} {
		g.r.ok("issue", "client", name, "--role", role, "--out", filepath.Join(g.dir, name))
	}
	g.d = dockerdtest.Start(t, dockerdtest.Options{NoTCP: true})
	g.addr = fmt.Sprintf("127.0.0.1:%d", dockerdtest.FreePort(t, "127.0.0.1"))
	g.audit = filepath.Join(t.TempDir(), "audit.jsonl")
	runGate(t, g.r, g.addr, append([]string{"--home", g.r.home(), "gate", "--listen", g.addr, "--docker", "unix://" + g.d.Socket,
		"--cert-dir", filepath.Join(g.dir, "daemon"), "--audit-log", g.audit}, extra...)...)
	g.d.ImportBusybox(t, "bb:1")
	return g
}

// runGate runs `dockca ARGS` (a gate listening on addr) in-process until
// the test ends, when it must exit 0.
func runGate(t *testing.T, r *cliRunner, addr string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- r.runCtx(ctx, args...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case res := <-done:
			if res.code != 0 {
				t.Errorf("dockca gate exited %d: %s", res.code, res.err)
			}
		case <-time.After(15 * time.Second):
			t.Error("dockca gate did not stop")
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		select {
		case res := <-done:
			t.Fatalf("dockca gate exited %d: %s", res.code, res.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the gate does not listen")
		}
	}
}

// docker runs the docker CLI through the gate as who, with stdin.
func (g *gateEnv) docker(t *testing.T, who, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dockerdtest.Require(t), args...)
	cmd.Env = g.env(t, who)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (g *gateEnv) env(t *testing.T, who string) []string {
	return dockerdtest.CleanEnv("DOCKER_HOST=tcp://"+g.addr, "DOCKER_TLS_VERIFY=1",
		"DOCKER_CERT_PATH="+filepath.Join(g.dir, who), "DOCKER_CONFIG="+filepath.Join(g.dir, who, "config"), "DOCKER_BUILDKIT=0")
}

func (g *gateEnv) allow(t *testing.T, who string, args ...string) string {
	t.Helper()
	out, err := g.docker(t, who, "", args...)
	if err != nil {
		t.Fatalf("%s: docker %s: %v\n%s", who, strings.Join(args, " "), err, out)
	}
	return out
}

func (g *gateEnv) deny(t *testing.T, who, want string, args ...string) {
	t.Helper()
	out, err := g.docker(t, who, "", args...)
	if err == nil || !strings.Contains(out, "authorization denied by dockca gate: dockca: ") || !strings.Contains(out, want) {
		t.Fatalf("%s: docker %s: want denial %q, got %v\n%s", who, strings.Join(args, " "), want, err, out)
	}
}

// streamFor runs a streaming docker command for d and returns what it
// printed by then.
func (g *gateEnv) streamFor(t *testing.T, who string, d time.Duration, during func(), args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, dockerdtest.Require(t), args...)
	cmd.Env = g.env(t, who)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		time.Sleep(time.Second)
		during()
	}
	_ = cmd.Wait()
	return out.String()
}

// TestGateEveryRole: the docker CLI works through the gate for each role,
// hijacked streams, streams and uploads included, and the denials are the
// plugin's.
func TestGateEveryRole(t *testing.T) {
	g := startGate(t)
	dockerdtest.RequireCommand(t, "tmux")

	// readonly reads and changes nothing.
	g.allow(t, "alice", "ps", "-a")
	g.allow(t, "alice", "images")
	g.allow(t, "alice", "volume", "ls")
	g.deny(t, "alice", "dockca: role readonly may not POST /volumes/create", "volume", "create", "ro-vol")

	// operator: lifecycle, exec and attach with stdin (half-closes), logs -f,
	// events, build, volumes and networks; no host access.
	g.allow(t, "bob", "run", "-d", "--network", "none", "--name", "ticker", "bb:1", "sh", "-c",
		"i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done")
	if out := g.allow(t, "bob", "exec", "ticker", "echo", "from-exec"); !strings.Contains(out, "from-exec") {
		t.Fatalf("exec: %q", out)
	}
	if out, err := g.docker(t, "bob", "abc\ndef\n", "exec", "-i", "ticker", "cat"); err != nil || out != "abc\ndef\n" {
		t.Fatalf("exec -i: %v %q", err, out)
	}
	if out, err := g.docker(t, "bob", "piped\n", "run", "-i", "--rm", "--network", "none", "bb:1", "cat"); err != nil || out != "piped\n" {
		t.Fatalf("run -i: %v %q", err, out)
	}
	if out := g.streamFor(t, "bob", 3*time.Second, nil, "logs", "-f", "ticker"); !strings.Contains(out, "tick8") {
		t.Fatalf("logs -f streamed too little: %q", out)
	}
	events := g.streamFor(t, "bob", 5*time.Second, func() {
		g.allow(t, "bob", "run", "--rm", "--network", "none", "--name", "evented", "bb:1", "true")
	}, "events", "--filter", "type=container")
	if !strings.Contains(events, "container start") || !strings.Contains(events, "name=evented") {
		t.Fatalf("events did not stream: %q", events)
	}
	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM bb:1\nCOPY hello /hello\nRUN cat /hello\n"), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "hello"), []byte("built-through-the-gate\n"), 0o644)
	if out := g.allow(t, "bob", "build", "--network", "none", "-t", "built:1", ctxDir); !strings.Contains(out, "built-through-the-gate") {
		t.Fatalf("build: %s", out)
	}
	g.deny(t, "bob", "with --network host (networkmode)", "build", "--network", "host", ctxDir)
	g.allow(t, "bob", "volume", "create", "op-vol")
	g.allow(t, "bob", "volume", "rm", "op-vol")
	g.allow(t, "bob", "network", "create", "op-net")
	g.allow(t, "bob", "network", "rm", "op-net")
	g.deny(t, "bob", "dockca: role operator may not POST /containers/create with --privileged (HostConfig.Privileged)",
		"run", "--privileged", "bb:1", "true")
	g.deny(t, "bob", "with a bind mount of host path /", "run", "-v", "/:/host", "bb:1", "true")

	// run -it on a real terminal.
	session := fmt.Sprintf("dockca-gate-%d", os.Getpid())
	shell := "env " + strings.Join(quoteAll(g.env(t, "bob")), " ") + " docker run -it --rm --network none bb:1 sh; echo EXIT=$?; sleep 30"
	if out, err := exec.Command("tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", shell).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", session).Run() })
	waitPane(t, session, "/ #")
	exec.Command("tmux", "send-keys", "-t", session, "echo tty-$((6*7))", "Enter").Run()
	waitPane(t, session, "tty-42")
	exec.Command("tmux", "send-keys", "-t", session, "exit 3", "Enter").Run()
	waitPane(t, session, "EXIT=3")

	// admin: cp both ways, save and load.
	g.allow(t, "carol", "run", "-d", "--network", "none", "--name", "box", "bb:1", "sleep", "1000")
	payload := make([]byte, 3<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	src := filepath.Join(t.TempDir(), "payload.bin")
	os.WriteFile(src, payload, 0o644)
	g.allow(t, "carol", "cp", src, "box:/tmp/payload.bin")
	back := filepath.Join(t.TempDir(), "back.bin")
	g.allow(t, "carol", "cp", "box:/tmp/payload.bin", back)
	if got, _ := os.ReadFile(back); !bytes.Equal(got, payload) {
		t.Fatalf("cp round trip changed the file (%d bytes back)", len(got))
	}
	tarball := filepath.Join(t.TempDir(), "img.tar")
	g.allow(t, "carol", "save", "-o", tarball, "built:1")
	g.allow(t, "carol", "rmi", "built:1")
	if out := g.allow(t, "carol", "load", "-i", tarball); !strings.Contains(out, "Loaded image: built:1") {
		t.Fatalf("load: %s", out)
	}
	g.deny(t, "bob", "may not POST /images/load", "load", "-i", tarball)

	// The audit lines are the plugin's.
	raw, entries := readAuditLog(t, g.audit)
	var sawDeny, sawAllow bool
	for _, e := range entries {
		sawDeny = sawDeny || e["user"] == "alice" && e["decision"] == "deny" && e["rule"] == "no-rule" && e["path"] == "/volumes/create"
		sawAllow = sawAllow || e["user"] == "bob" && e["decision"] == "allow" && e["rule"] == "build"
	}
	if !sawDeny || !sawAllow {
		t.Fatalf("audit log lacks the decisions:\n%s", raw)
	}
}

func quoteAll(env []string) []string {
	out := make([]string, len(env))
	for i, kv := range env {
		out[i] = "'" + strings.ReplaceAll(kv, "'", `'\''`) + "'"
	}
	return out
}

func waitPane(t *testing.T, session, want string) {
	t.Helper()
	var screen []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		screen, _ = exec.Command("tmux", "capture-pane", "-p", "-t", session).Output()
		if bytes.Contains(screen, []byte(want)) {
			return
		}
	}
	t.Fatalf("the terminal never showed %q:\n%s", want, screen)
}

// gateClient is a Go HTTPS client of the gate as who, keeping its
// connection alive between requests.
func (g *gateEnv) gateClient(t *testing.T, who string) *http.Client {
	t.Helper()
	return mtlsClient(t, filepath.Join(g.dir, who), 1)
}

// ping sends GET /_ping and reports the status, the body, whether the
// connection was reused and the serial of the gate's certificate.
func ping(t *testing.T, c *http.Client, addr string) (int, string, bool, string) {
	t.Helper()
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "https://"+addr+"/_ping", nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error(), reused, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), reused, fmt.Sprintf("%x", resp.TLS.PeerCertificates[0].SerialNumber)
}

// TestGateRevocationAndReload: a revoked certificate is refused on the next
// request of an open connection and at the next handshake; the gate's own
// certificate files replaced under a held connection leave it working and
// give new connections the new certificate.
func TestGateRevocationAndReload(t *testing.T) {
	g := startGate(t)
	// dockca audit recognises the gate and names its certificate.
	res := g.r.run("audit", "--json", "--fail-on", "none", "--roots", filepath.Join(g.dir, "daemon", "ca.pem"), g.addr)
	if res.code != 0 {
		t.Fatalf("audit of the gate: exit %d: %s", res.code, res.err)
	}
	var rep struct {
		Targets  []map[string]any `json:"targets"`
		Findings []map[string]any `json:"findings"`
	}
	if err := json.Unmarshal([]byte(res.out), &rep); err != nil || len(rep.Targets) != 1 || rep.Targets[0]["service"] != "dockca gate" ||
		rep.Targets[0]["client_cert"] != "required" || len(rep.Findings) != 1 || rep.Findings[0]["id"] != "gate-ok" ||
		!strings.Contains(fmt.Sprint(rep.Findings[0]["detail"]), "CN=127.0.0.1") {
		t.Fatalf("audit of the gate: %v\n%s", err, res.out)
	}

	bob := g.gateClient(t, "bob")
	if st, body, _, _ := ping(t, bob, g.addr); st != 200 || body != "OK" {
		t.Fatalf("bob's first ping: %d %s", st, body)
	}
	g.r.ok("revoke", "bob")
	st, body, reused, _ := ping(t, bob, g.addr)
	if st != http.StatusForbidden || !reused || !strings.Contains(body, "(bob) was revoked at") {
		t.Fatalf("bob on his open connection after revocation: %d reused=%v %s", st, reused, body)
	}
	if st, body, _, _ := ping(t, g.gateClient(t, "bob"), g.addr); st != 0 || !strings.Contains(body, "tls") {
		t.Fatalf("bob's new handshake after revocation: %d %s", st, body)
	}

	carol := g.gateClient(t, "carol")
	_, _, _, before := ping(t, carol, g.addr)
	g.r.ok("issue", "daemon", "127.0.0.1", "--out", filepath.Join(g.dir, "daemon"), "--force")
	time.Sleep(1100 * time.Millisecond) // the gate looks at its files at most once a second
	st, _, reused, same := ping(t, carol, g.addr)
	if st != 200 || !reused || same != before {
		t.Fatalf("the held connection after the certificate changed: %d reused=%v serial %s (was %s)", st, reused, same, before)
	}
	st, _, reused, fresh := ping(t, g.gateClient(t, "carol"), g.addr)
	if st != 200 || reused || fresh == before {
		t.Fatalf("a new connection after the certificate changed: %d reused=%v serial %s (old %s)", st, reused, fresh, before)
	}
}

// TestGateBypassCorpus replays the plugin's bypass corpus against the gate:
// nothing gets past it for non-admin roles.
func TestGateBypassCorpus(t *testing.T) {
	g := startGate(t)
	g.allow(t, "carol", "volume", "create", "admin-vol")
	bob := g.gateClient(t, "bob")
	send := func(method, uri string, hdr map[string][]string, body io.Reader, length int64) (int, string) {
		req, _ := http.NewRequest(method, "https://"+g.addr+uri, body)
		req.ContentLength = length
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := bob.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, uri, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	labelled := "/v1.41/volumes/prune?filters=" + url.QueryEscape(`{"label":["nothing=1"]}`)
	privileged := `{"Image":"bb:1","Cmd":["true"],"HostConfig":{"Privileged":true}`
	for _, c := range []struct {
		name   string
		method string
		uri    string
		hdr    map[string][]string
		body   string
		chunk  bool
		status int
		want   string
	}{
		{"duplicated Content-Type", "POST", labelled, map[string][]string{"Content-Type": {"application/x-www-form-urlencoded", "application/json"}},
			"filters=%7B%7D", false, 400, "the header Content-Type is repeated"},
		{"form body", "POST", labelled, map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}},
			"filters=%7B%7D", false, 403, "form-encoded body"},
		{"chunked form body", "POST", labelled, map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}},
			"filters=%7B%7D", true, 403, "form-encoded body"},
		{"multipart pull", "POST", "/v1.41/images/create?fromImage=bb", map[string][]string{"Content-Type": {"multipart/form-data; boundary=x"}},
			"--x\r\nContent-Disposition: form-data; name=\"fromSrc\"\r\n\r\nhttp://127.0.0.1:1/x\r\n--x--\r\n", false, 403, "form-encoded body"},
		{"chunked privileged create", "POST", "/v1.41/containers/create", map[string][]string{"Content-Type": {"application/json"}},
			privileged + "}", true, 403, "with --privileged (HostConfig.Privileged)"},
		{"privileged create padded past 1 MiB", "POST", "/v1.41/containers/create", map[string][]string{"Content-Type": {"application/json"}},
			privileged + `,"Labels":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}`, false, 403, "with --privileged (HostConfig.Privileged)"},
		{"privileged create without Content-Type", "POST", "/v1.41/containers/create", nil,
			privileged + "}", false, 403, "with --privileged"},
		{"body over the judged limit", "POST", "/v1.41/containers/create", map[string][]string{"Content-Type": {"application/json"}},
			`{"Labels":{"pad":"` + strings.Repeat("x", 17<<20) + `"}}`, false, 413, "is refused"},
		{"old API version", "POST", "/v1.23/containers/x/start", map[string][]string{"Content-Type": {"application/json"}},
			`{"Privileged":true}`, false, 403, "API version 1.23"},
	} {
		t.Run(c.name, func(t *testing.T) {
			length := int64(len(c.body))
			var body io.Reader = strings.NewReader(c.body)
			if c.chunk {
				length, body = -1, io.MultiReader(strings.NewReader(c.body))
			}
			status, out := send(c.method, c.uri, c.hdr, body, length)
			if status != c.status || !strings.Contains(out, c.want) {
				t.Fatalf("status %d, want %d with %q: %.300s", status, c.status, c.want, out)
			}
		})
	}
	if out := g.allow(t, "carol", "volume", "ls", "-q"); !strings.Contains(out, "admin-vol") {
		t.Fatal("the admin's volume was pruned")
	}
}

// TestDaemonSetupGate: daemon setup --gate leaves dockerd on its unix socket
// only, writes the gate's unit, changes nothing on a second run, and the
// unit's command line serves the docker CLI over mutual TLS.
func TestDaemonSetupGate(t *testing.T) {
	dockerdtest.Require(t)
	r := newCLI(t)
	initCA(t, r)
	root := t.TempDir()
	sock := filepath.Join(dockerdtest.ShortTempDir(t), "docker.sock")
	addr := fmt.Sprintf("127.0.0.1:%d", dockerdtest.FreePort(t, "127.0.0.1"))
	config := filepath.Join(root, "etc/docker/daemon.json")
	os.MkdirAll(filepath.Dir(config), 0o755)
	// What a previous plain setup left: dockerd's own TLS.
	os.WriteFile(config, []byte(`{"hosts": ["unix://`+sock+`", "tcp://`+addr+`"], "tlsverify": true, "tlscacert": "/old/ca.pem",
		"tlscert": "/old/cert.pem", "tlskey": "/old/key.pem", "log-level": "warn"}`), 0o644)
	tlsDir := filepath.Join(root, "etc/docker/tls")
	unitDir := filepath.Join(root, "etc/systemd/system")
	setup := []string{"daemon", "setup", "127.0.0.1", "--gate", "--listen", "tcp://" + addr, "--tls-dir", tlsDir, "--config", config,
		"--systemd-dir", filepath.Join(unitDir, "docker.service.d"), "--gate-systemd-dir", unitDir}
	out := r.ok(setup...)
	if !strings.Contains(out, "systemctl enable --now dockca-gate.service") {
		t.Errorf("setup does not say how to start the gate:\n%s", out)
	}
	var cfg map[string]any
	b, _ := os.ReadFile(config)
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg["hosts"]) != "[unix://"+sock+"]" || cfg["log-level"] != "warn" {
		t.Fatalf("daemon.json behind the gate: %s", b)
	}
	for _, k := range []string{"tls", "tlsverify", "tlscacert", "tlscert", "tlskey"} {
		if _, ok := cfg[k]; ok {
			t.Fatalf("daemon.json still has %s: %s", k, b)
		}
	}
	unit, err := os.ReadFile(filepath.Join(unitDir, "dockca-gate.service"))
	if err != nil {
		t.Fatal(err)
	}
	var execStart []string
	for _, line := range strings.Split(string(unit), "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = strings.Fields(rest)
		}
	}
	wantArgs := "--home " + r.home() + " gate --listen " + addr + " --docker unix:///var/run/docker.sock --cert-dir " + tlsDir
	if !strings.Contains(string(unit), "After=docker.service") || !strings.Contains(strings.Join(execStart, " "), wantArgs) {
		t.Fatalf("gate unit:\n%s", unit)
	}
	if out := r.ok(setup...); !strings.Contains(out, "nothing changed") {
		t.Fatalf("second run:\n%s", out)
	}

	// dockerd from the daemon.json as written, the gate from the unit's
	// command line (with this test's dockerd socket).
	dockerdtest.Start(t, dockerdtest.Options{ConfigFile: config, Socket: sock})
	args := execStart[1:]
	for i, a := range args {
		if a == "unix:///var/run/docker.sock" {
			args[i] = "unix://" + sock
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- r.runCtx(ctx, args...) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gate from the unit does not listen")
		}
	}
	r.ok("issue", "client", "ops", "--role", "operator", "--out", filepath.Join(root, "ops"))
	if out, err := dockerTLS(t, addr, filepath.Join(root, "ops"), "version", "--format", "{{.Server.Os}}"); err != nil || strings.TrimSpace(out) != "linux" {
		t.Fatalf("docker version through the gate: %v\n%s", err, out)
	}
	if out, err := dockerTLS(t, addr, filepath.Join(root, "ops"), "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", "device=/", "x"); err == nil ||
		!strings.Contains(out, "authorization denied by dockca gate") {
		t.Fatalf("host bind volume through the gate: %v\n%s", err, out)
	}
}

// TestGateBadInput: one clear line and the right exit status, nothing left
// listening.
func TestGateBadInput(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"gate", "--docker", "tcp://127.0.0.1:2375"}, 2, `--docker "tcp://127.0.0.1:2375" must be unix:///PATH`},
		{[]string{"gate", "--cert-dir", "/nonexistent/tls", "--listen", "127.0.0.1:0"}, 1, "gate: load certificate: stat /nonexistent/tls/server-cert.pem"},
		{[]string{"gate", "extra"}, 2, ""},
		{[]string{"gate", "--fingerprint", "ab"}, 2, "--fingerprint needs --ca-url"},
	} {
		res := r.run(c.args...)
		if res.code != c.code || !strings.Contains(res.err, c.want) || strings.Count(strings.TrimSpace(res.err), "\n") != 0 {
			t.Errorf("dockca %s: exit %d, stderr %q; want exit %d with %q", strings.Join(c.args, " "), res.code, res.err, c.code, c.want)
		}
	}
}

// TestGateOneConnection drives one client connection by hand: GET and HEAD
// requests pipelined in one write (the gate's own HTTP/1.1 path), a
// refusal that keeps the connection, then a request with a body, which
// hands the connection to net/http's server with nothing lost, more GETs
// there, and Connection: close honoured on both paths.
func TestGateOneConnection(t *testing.T) {
	g := startGate(t)
	dial := func() (*tls.Conn, *bufio.Reader) {
		pair, err := tls.LoadX509KeyPair(filepath.Join(g.dir, "bob", "cert.pem"), filepath.Join(g.dir, "bob", "key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		rootPEM, _ := os.ReadFile(filepath.Join(g.dir, "bob", "ca.pem"))
		roots.AppendCertsFromPEM(rootPEM)
		c, err := tls.Dial("tcp", g.addr, &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	send := func(c *tls.Conn, raw string) {
		t.Helper()
		if _, err := io.WriteString(c, strings.ReplaceAll(raw, "\n", "\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(br *bufio.Reader, method string, status int, want string) http.Header {
		t.Helper()
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != status || !strings.Contains(string(body), want) {
			t.Fatalf("%s: %d %q (%v), want %d with %q", method, resp.StatusCode, body, err, status, want)
		}
		if method == "HEAD" && len(body) != 0 {
			t.Fatalf("HEAD answered with a body: %q", body)
		}
		return resp.Header
	}

	c, br := dial()
	send(c, "GET /_ping HTTP/1.1\nHost: gate\n\nHEAD /_ping HTTP/1.1\nHost: gate\n\nGET /v1.41/images/json HTTP/1.1\nHost: gate\n\n")
	expect(br, "GET", 200, "OK")
	if h := expect(br, "HEAD", 200, ""); h.Get("Api-Version") == "" {
		t.Fatalf("HEAD /_ping lost dockerd's headers: %v", h)
	}
	expect(br, "GET", 200, `"RepoTags":["bb:1"]`)
	send(c, "GET /v1.41/containers/json HTTP/1.1\nHost: gate\nContent-Type: a/b\nContent-Type: c/d\n\n")
	expect(br, "GET", 400, "the header Content-Type is repeated")
	body := `{"Name":"onevol"}`
	send(c, "POST /v1.41/volumes/create HTTP/1.1\nHost: gate\nContent-Type: application/json\nContent-Length: "+fmt.Sprint(len(body))+"\n\n"+body+
		"GET /v1.41/volumes/onevol HTTP/1.1\nHost: gate\n\n")
	expect(br, "POST", 201, `"Name":"onevol"`)
	expect(br, "GET", 200, `"Name":"onevol"`)
	send(c, "GET /_ping HTTP/1.1\nHost: gate\nConnection: close\n\n")
	expect(br, "GET", 200, "OK")
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the connection stayed open after Connection: close on net/http's path: %d, %v", n, err)
	}

	c, br = dial()
	send(c, "GET /_ping HTTP/1.1\nHost: gate\nConnection: close\n\n")
	expect(br, "GET", 200, "OK")
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the connection stayed open after Connection: close on the gate's own path: %d, %v", n, err)
	}

	// A stream on the gate's own path arrives as dockerd sends it, chunked.
	c, br = dial()
	send(c, "GET /v1.41/events?filters="+url.QueryEscape(`{"type":["volume"]}`)+" HTTP/1.1\nHost: gate\n\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("events: %v", err)
	}
	g.allow(t, "carol", "volume", "create", "streamed")
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, `"streamed"`) {
		t.Fatalf("events did not stream: %q, %v", line, err)
	}
}
