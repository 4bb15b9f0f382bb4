package authz

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/pki"
)

// e2e is one real dockerd that consults a plugin served by this package.
type e2e struct {
	pki    *testPKI
	name   string
	socket string
	d      *dockerdtest.Daemon
	audit  string
	stop   func() error
	opts   Options
	lookup *lateSocket
}

func uniquePluginName(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("dockca-test-%d-%s", os.Getpid(), hex.EncodeToString(b))
}

// startE2E serves the plugin under a unique name in /run/docker/plugins and
// then starts dockerd with --tlsverify and --authorization-plugin=NAME.
func startE2E(t *testing.T, p *testPKI, rev RevocationChecker) *e2e {
	t.Helper()
	return startE2EOpts(t, p, rev, nil)
}

// startE2EOpts is startE2E with the plugin's options changed by mod.
func startE2EOpts(t *testing.T, p *testPKI, rev RevocationChecker, mod func(*Options)) *e2e {
	t.Helper()
	srvDir := p.server(t).writeFiles(t, filepath.Join(t.TempDir(), "server"))
	return startE2EWith(t, p, rev, dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(srvDir, "ca.pem"),
		Cert: filepath.Join(srvDir, "cert.pem"), Key: filepath.Join(srvDir, "key.pem")}, mod)
}

func startE2EWith(t *testing.T, p *testPKI, rev RevocationChecker, do dockerdtest.Options, mod func(*Options)) *e2e {
	t.Helper()
	dockerdtest.Require(t)
	e := &e2e{pki: p, name: uniquePluginName(t)}
	e.socket = SocketPath(e.name)
	e.audit = filepath.Join(t.TempDir(), "audit", "audit.jsonl")
	al, err := OpenAuditLog(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	e.lookup = &lateSocket{}
	e.opts = Options{Name: e.name, Root: p.root, Revocations: rev, Audit: al, Containers: e.lookup}
	if mod != nil {
		mod(&e.opts)
	}
	e.startPlugin(t)
	t.Cleanup(func() { os.Remove(e.socket) })

	do.Args = append(do.Args, "--authorization-plugin="+e.name)
	e.d = dockerdtest.Start(t, do)
	e.lookup.set(NewDockerSocket(e.d.Socket))
	return e
}

// lateSocket is the plugin's lookup on a dockerd that starts after the
// plugin (dockerd needs the plugin's socket first; the harness picks the
// daemon's socket path when it starts it).
type lateSocket struct{ s atomic.Pointer[DockerSocket] }

func (l *lateSocket) set(s *DockerSocket) { l.s.Store(s) }

func (l *lateSocket) get() (*DockerSocket, error) {
	if s := l.s.Load(); s != nil {
		return s, nil
	}
	return nil, errors.New("dockerd has not started yet")
}

func (l *lateSocket) Container(ctx context.Context, ref string) (*ContainerInfo, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.Container(ctx, ref)
}

func (l *lateSocket) ExecContainer(ctx context.Context, id string) (string, error) {
	s, err := l.get()
	if err != nil {
		return "", err
	}
	return s.ExecContainer(ctx, id)
}

func (l *lateSocket) Volume(ctx context.Context, name string) (*VolumeInfo, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.Volume(ctx, name)
}

func (l *lateSocket) isOwnLookup(method string, segs []string, headers map[string]string) bool {
	s, err := l.get()
	return err == nil && s.isOwnLookup(method, segs, headers)
}

func (e *e2e) startPlugin(t *testing.T) {
	t.Helper()
	_, _, stop := servePlugin(t, Options{Name: e.opts.Name, Socket: e.socket, Root: e.opts.Root,
		Revocations: e.opts.Revocations, Audit: e.opts.Audit, Containers: e.opts.Containers, DenyLocal: e.opts.DenyLocal})
	e.stop = stop
}

// as runs the docker CLI over mTLS with the leaf's certificate.
func (e *e2e) as(t *testing.T, l *testLeaf, args ...string) (string, error) {
	t.Helper()
	dir := filepath.Join(e.d.Dir, "clients", pki.SerialOf(l.cert))
	if _, err := os.Stat(dir); err != nil {
		l.writeFiles(t, dir)
	}
	return dockerdtest.Docker(t, []string{"DOCKER_HOST=tcp://" + e.d.Addr, "DOCKER_TLS_VERIFY=1",
		"DOCKER_CERT_PATH=" + dir, "DOCKER_CONFIG=" + dir}, args...)
}

func (e *e2e) mustAllow(t *testing.T, l *testLeaf, args ...string) string {
	t.Helper()
	out, err := e.as(t, l, args...)
	if err != nil {
		t.Fatalf("%s: docker %s: %v\n%s", l.cert.Subject.CommonName, strings.Join(args, " "), err, out)
	}
	return out
}

func (e *e2e) mustDeny(t *testing.T, l *testLeaf, want string, args ...string) {
	t.Helper()
	out, err := e.as(t, l, args...)
	if err == nil {
		t.Fatalf("%s: docker %s succeeded, want denial %q\n%s", l.cert.Subject.CommonName, strings.Join(args, " "), want, out)
	}
	if !strings.Contains(out, "authorization denied by plugin "+e.name+": ") || !strings.Contains(out, want) {
		t.Fatalf("%s: docker %s: output lacks %q:\n%s", l.cert.Subject.CommonName, strings.Join(args, " "), want, out)
	}
}

// importImage builds a one-file image without a registry, over the local
// socket (root, allowed by default).
func (e *e2e) importImage(t *testing.T, ref string) {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `tar -C "$1" -c . | docker import - "$2"`, "sh", root, ref)
	cmd.Env = dockerdtest.CleanEnv("DOCKER_HOST=unix://"+e.d.Socket, "DOCKER_CONFIG="+filepath.Join(e.d.Dir, "local-docker-config"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
}

func readAudit(t *testing.T, name string) []AuditEntry {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entries []AuditEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		entries = append(entries, e)
	}
	return entries
}

func findAudit(entries []AuditEntry, match func(AuditEntry) bool) bool {
	for _, e := range entries {
		if match(e) {
			return true
		}
	}
	return false
}

func TestE2ELocalModeRolesAndRevocation(t *testing.T) {
	p := newPKI(t)
	rev := newMapRevocations()
	e := startE2E(t, p, rev)
	e.importImage(t, "dockca-e2e/tiny:1")
	ro := p.client(t, "rita", "readonly")
	op := p.client(t, "otto", "operator")
	admin := p.client(t, "ada", "admin")

	// readonly reports but changes nothing.
	e.mustAllow(t, ro, "ps", "-a")
	e.mustAllow(t, ro, "volume", "ls")
	e.mustAllow(t, ro, "image", "ls")
	e.mustDeny(t, ro, "dockca: role readonly may not POST /volumes/create", "volume", "create", "ro-vol")

	// operator runs workloads, but none that is root on the host.
	e.mustAllow(t, op, "volume", "create", "op-vol")
	e.mustAllow(t, op, "create", "--name", "plain", "-v", "op-vol:/data", "dockca-e2e/tiny:1", "/hello")
	e.mustAllow(t, op, "rm", "plain")
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--privileged"}, "dockca: role operator may not POST /containers/create with --privileged (HostConfig.Privileged)"},
		{[]string{"-v", "/:/host"}, "with a bind mount of host path / (-v, HostConfig.Binds)"},
		{[]string{"--mount", "type=bind,source=/etc,target=/e"}, "bind mount of host path /etc (--mount type=bind"},
		{[]string{"--pid", "host"}, "host's namespace (--pid host, HostConfig.PidMode)"},
		{[]string{"--cap-add", "SYS_ADMIN"}, "SYS_ADMIN (--cap-add, HostConfig.CapAdd)"},
		{[]string{"--security-opt", "seccomp=unconfined"}, "--security-opt seccomp=unconfined"},
	} {
		args := append(append([]string{"create"}, c.flags...), "dockca-e2e/tiny:1", "/hello")
		e.mustDeny(t, op, c.want, args...)
	}
	e.mustDeny(t, op, "may not POST /swarm/init", "swarm", "init", "--advertise-addr", "127.0.0.1")

	// admin can do all of it.
	e.mustAllow(t, admin, "create", "--name", "root", "--privileged", "-v", "/:/host", "--pid", "host",
		"--cap-add", "SYS_ADMIN", "dockca-e2e/tiny:1", "/hello")
	e.mustAllow(t, admin, "rm", "root")

	// Revocation is effective on the very next request, for that
	// certificate only.
	rev.revoke(op.cert, "key-compromise")
	e.mustDeny(t, op, fmt.Sprintf("dockca: certificate %s (otto) was revoked at ", pki.SerialOf(op.cert)), "volume", "ls")
	e.mustDeny(t, op, "(key-compromise)", "ps")
	e.mustAllow(t, admin, "volume", "ls")
	e.mustAllow(t, ro, "ps")

	entries := readAudit(t, e.audit)
	for _, want := range []struct {
		what  string
		match func(AuditEntry) bool
	}{
		{"readonly denied volume create", func(a AuditEntry) bool {
			return a.User == "rita" && a.Role == "readonly" && a.Method == "POST" && a.Path == "/volumes/create" && a.Decision == "deny"
		}},
		{"operator allowed container create", func(a AuditEntry) bool {
			return a.User == "otto" && a.Path == "/containers/create" && a.Decision == "allow" && a.Rule == "container-create"
		}},
		{"operator denied privileged", func(a AuditEntry) bool {
			return a.User == "otto" && a.Decision == "deny" && strings.Contains(a.Reason, "--privileged")
		}},
		{"revoked", func(a AuditEntry) bool {
			return a.User == "otto" && a.Serial == pki.SerialOf(op.cert) && a.Rule == "revoked" && a.Decision == "deny"
		}},
		{"local import", func(a AuditEntry) bool { return a.User == "" && a.Rule == "local" && a.Path == "/images/create" }},
	} {
		if !findAudit(entries, want.match) {
			t.Errorf("audit log lacks %s", want.what)
		}
	}
	raw, _ := os.ReadFile(e.audit)
	if bytes.Contains(raw, []byte("op-vol")) && bytes.Contains(raw, []byte(`"Name"`)) {
		t.Error("audit log holds a request body")
	}

	// With the plugin stopped dockerd fails closed; restarting the plugin
	// is the recovery.
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := e.as(t, admin, "volume", "ls")
	if err == nil {
		t.Fatalf("request succeeded with the plugin stopped:\n%s", out)
	}
	t.Logf("with the plugin stopped dockerd answered after %s: %s", time.Since(start).Round(time.Second), strings.TrimSpace(out))
	e.startPlugin(t)
	e.mustAllow(t, admin, "volume", "ls")
}

func TestE2ERemoteModeCRL(t *testing.T) {
	p := newPKI(t)
	svc := newCRLService(t, p)
	src, err := NewCRLSource(CRLOptions{URL: svc.srv.URL, Root: p.root, Issuers: []*x509.Certificate{p.inter},
		CacheDir: filepath.Join(t.TempDir(), "cache"), Refresh: 300 * time.Millisecond, MaxStale: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	e := startE2E(t, p, src) // Serve runs the refresher
	ro := p.client(t, "rita", "readonly")
	ro2 := p.client(t, "rob", "readonly")
	e.mustAllow(t, ro, "ps")
	e.mustAllow(t, ro2, "ps")

	// The refresher revalidates with the ETag before anything changes.
	for wait := time.Now().Add(5 * time.Second); svc.notMod.Load() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatal("the refresher never got a 304 (ETag not used)")
		}
	}
	svc.revoke(t, ro.cert, 1)
	revokedAt := time.Now()
	deadline := revokedAt.Add(10 * time.Second)
	for {
		out, err := e.as(t, ro, "ps")
		if err != nil {
			if !strings.Contains(out, fmt.Sprintf("certificate %s (rita) was revoked at", pki.SerialOf(ro.cert))) ||
				!strings.Contains(out, "(key-compromise)") {
				t.Fatalf("denial does not say revoked:\n%s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("revocation not enforced within 10s of a 300ms refresh")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("remote revocation enforced %s after publication (refresh 300ms)", time.Since(revokedAt).Round(time.Millisecond))
	e.mustAllow(t, ro2, "ps")
}

// TestE2EDaemonJSONReload is the install path: dockerd already runs, the
// plugin is started, "authorization-plugins" is added to daemon.json and
// dockerd gets SIGHUP; from then on the plugin decides.
func TestE2EDaemonJSONReload(t *testing.T) {
	dockerdtest.Require(t)
	p := newPKI(t)
	name := uniquePluginName(t)
	_, _, _ = servePlugin(t, Options{Name: name, Socket: SocketPath(name), Root: p.root, Revocations: newMapRevocations()})
	t.Cleanup(func() { os.Remove(SocketPath(name)) })

	srvDir := p.server(t).writeFiles(t, filepath.Join(t.TempDir(), "server"))
	cfg := filepath.Join(dockerdtest.ShortTempDir(t), "daemon.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(srvDir, "ca.pem"),
		Cert: filepath.Join(srvDir, "cert.pem"), Key: filepath.Join(srvDir, "key.pem"), ConfigFile: cfg})
	e := &e2e{pki: p, name: name, d: d}
	ro := p.client(t, "rita", "readonly")
	e.mustAllow(t, ro, "volume", "create", "before-reload")

	if err := os.WriteFile(cfg, []byte(`{"authorization-plugins": ["`+name+`"]}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pidText, err := os.ReadFile(filepath.Join(d.Dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(pidText), &pid); err != nil {
		t.Fatal(err)
	}
	proc, _ := os.FindProcess(pid)
	if err := proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := e.as(t, ro, "volume", "create", "after-reload")
		if err != nil && strings.Contains(out, "dockca: role readonly may not POST /volumes/create") {
			break
		}
		if err == nil {
			_, _ = e.as(t, p.client(t, "ada", "admin"), "volume", "rm", "after-reload")
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin not in force 15s after SIGHUP: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.mustAllow(t, ro, "volume", "ls")
}
