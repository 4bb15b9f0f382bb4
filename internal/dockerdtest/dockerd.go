// Package dockerdtest starts real, throwaway Docker daemons for end-to-end
// tests. Every daemon gets its own data, exec and socket directories under a
// test temp dir, listens on loopback only, and is stopped with SIGTERM when
// the test ends. dockca's promise is about what a real dockerd and the real
// docker CLI accept, so tests use this rather than a fake API server.
//
// When dockerd is not installed the test is skipped, except under CI=true,
// where a missing dockerd is a failure: CI must never pass by skipping.
package dockerdtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configure one daemon. TCP is always served on a free loopback
// port; the TLS fields decide how it is protected.
type Options struct {
	// TLS serves TCP with TLS (needs Cert and Key).
	TLS bool
	// TLSVerify requires client certificates signed by CACert.
	TLSVerify bool
	// CACert, Cert, Key are file paths handed to dockerd's --tls* flags.
	CACert, Cert, Key string
	// ConfigFile, if set, is passed as --config-file (TLS flags may then be
	// left empty so that the file decides).
	ConfigFile string
	// NoTCP leaves out the -H tcp:// listener (for a ConfigFile that lists
	// its own hosts).
	NoTCP bool
	// Args are extra dockerd arguments.
	Args []string
	// Host is the loopback address to listen on; default 127.0.0.1.
	Host string
	// Socket, if set, is a unix socket path that ConfigFile's "hosts" lists.
	// The harness then passes no -H flag at all (dockerd refuses "hosts"
	// given both as a flag and in the file, so this is how a test runs a
	// daemon.json with hosts as written) and waits on this socket. It
	// implies NoTCP: the file's hosts decide every listener.
	Socket string
}

// Daemon is a running dockerd.
type Daemon struct {
	Dir    string // private working directory
	Socket string // unix socket path
	Addr   string // host:port of the TCP listener ("" with NoTCP)
	cmd    *exec.Cmd
	args   []string // dockerd's arguments, for Restart
	logBuf *LockedBuffer
	done   chan struct{}
	once   sync.Once
}

// Require fails (under CI=true) or skips the test when dockerd or the docker
// CLI is missing. It returns the path of the docker CLI.
func Require(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "dockerd needs root")
	}
	if _, err := exec.LookPath("dockerd"); err != nil {
		missing(t, "dockerd is not installed (apt-get install docker.io)")
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		missing(t, "the docker CLI is not installed")
	}
	return docker
}

// RequireCommand returns the path of a command a test needs, skipping
// without it, except under CI=true, where make test has installed it and
// its absence fails the test.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, name+" is not installed")
	}
	return p
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("end-to-end test cannot run: %s", why)
	}
	t.Skipf("skipping end-to-end test: %s", why)
}

// FreePort returns a TCP port on host that was free a moment ago.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ShortTempDir returns a temp dir with a short path: unix socket paths are
// limited to 108 bytes and t.TempDir() paths can exceed that.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "dk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Start starts dockerd and waits until its unix socket answers /_ping.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	Require(t)
	dir := ShortTempDir(t)
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "docker.sock"), logBuf: &LockedBuffer{}, done: make(chan struct{})}
	if o.Socket != "" {
		d.Socket = o.Socket
		o.NoTCP = true
	}
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	args := []string{
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"),
	}
	if o.Socket == "" {
		args = append(args, "-H", "unix://"+d.Socket)
	}
	if o.ConfigFile != "" {
		args = append(args, "--config-file", o.ConfigFile)
	} else {
		// Isolate from any /etc/docker/daemon.json on the machine.
		empty := filepath.Join(dir, "daemon.json")
		if err := os.WriteFile(empty, []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config-file", empty)
	}
	if !o.NoTCP {
		d.Addr = net.JoinHostPort(host, strconv.Itoa(FreePort(t, host)))
		args = append(args, "-H", "tcp://"+d.Addr)
	}
	switch {
	case o.TLSVerify:
		args = append(args, "--tlsverify", "--tlscacert", o.CACert, "--tlscert", o.Cert, "--tlskey", o.Key)
	case o.TLS:
		args = append(args, "--tls", "--tlsverify=false", "--tlscert", o.Cert, "--tlskey", o.Key)
	case o.ConfigFile == "" && !o.NoTCP:
		args = append(args, "--tls=false")
	}
	args = append(args, o.Args...)
	d.args = args
	d.start(t)
	t.Cleanup(func() { d.Stop(t) })
	return d
}

func (d *Daemon) start(t testing.TB) {
	t.Helper()
	d.cmd = exec.Command("dockerd", d.args...)
	d.cmd.Stdout = d.logBuf
	d.cmd.Stderr = d.logBuf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	done := d.done
	cmd := d.cmd
	go func() { cmd.Wait(); close(done) }()
	if err := d.waitReady(60 * time.Second); err != nil {
		t.Fatalf("dockerd did not become ready: %v\n--- dockerd log ---\n%s", err, d.Log())
	}
}

// Restart stops dockerd with SIGTERM and starts it again with the same
// arguments, data and sockets, as `systemctl restart docker` does: it
// reads its TLS files again, and with --live-restore its containers keep
// running meanwhile.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("dockerd did not stop for a restart\n%s", d.Log())
	}
	d.done = make(chan struct{})
	d.start(t)
}

func (d *Daemon) waitReady(limit time.Duration) error {
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.Socket)
	}}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("dockerd exited")
		default:
		}
		resp, err := client.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			// 403: an authorization plugin that denies local requests
			// answered, so dockerd is serving.
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusForbidden {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer on %s within %s", d.Socket, limit)
}

// Log returns what dockerd printed so far.
func (d *Daemon) Log() string { return d.logBuf.String() }

// Stop sends SIGTERM and waits for dockerd (and its containerd) to exit.
func (d *Daemon) Stop(t testing.TB) {
	d.once.Do(func() {
		if d.cmd.Process == nil {
			return
		}
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
		// dockerd leaves mounts behind under its exec-root on some kernels.
		_ = exec.Command("umount", "-R", filepath.Join(d.Dir, "exec")).Run()
		if t.Failed() {
			t.Logf("--- dockerd log (%s) ---\n%s", d.Dir, d.Log())
		}
	})
}

// Docker runs the real docker CLI with env added to a clean environment
// (PATH and HOME kept, DOCKER_* from the caller's environment dropped) and
// returns combined output.
func Docker(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	docker := Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, docker, args...)
	cmd.Env = CleanEnv(env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// CleanEnv is os.Environ without DOCKER_* variables, plus extra.
func CleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DOCKER_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// Local runs the docker CLI against the daemon's unix socket (no TLS) with a
// private DOCKER_CONFIG.
func (d *Daemon) Local(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cfg := filepath.Join(d.Dir, "local-docker-config")
	_ = os.MkdirAll(cfg, 0o700)
	return Docker(t, []string{"DOCKER_CONFIG=" + cfg, "DOCKER_HOST=unix://" + d.Socket}, args...)
}

// LockedBuffer is a bytes.Buffer safe for a process writing its output
// while a test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// BusyboxTar returns a root filesystem holding a static busybox as
// /bin/busybox, /bin/sh and a few applets, as a tar stream for docker
// import: a runnable image without a registry. It needs Debian's
// busybox-static.
func BusyboxTar(t testing.TB) []byte {
	t.Helper()
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		missing(t, "busybox is not installed (apt-get install busybox-static)")
	}
	if out, err := exec.Command("ldd", bb).CombinedOutput(); err == nil && !strings.Contains(string(out), "not a dynamic executable") {
		missing(t, bb+" is not static (apt-get install busybox-static)")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), raw, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "sleep", "echo", "cat", "ls", "true", "id", "head", "dd"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"tmp", "etc", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("tar", "-C", root, "-c", ".").Output()
	if err != nil {
		t.Fatalf("tar the busybox root: %v", err)
	}
	return out
}

// ImportBusybox imports BusyboxTar as ref over the daemon's unix socket.
func (d *Daemon) ImportBusybox(t testing.TB, ref string) {
	t.Helper()
	tarball := BusyboxTar(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := filepath.Join(d.Dir, "local-docker-config")
	_ = os.MkdirAll(cfg, 0o700)
	cmd := exec.CommandContext(ctx, Require(t), "import", "-", ref)
	cmd.Env = CleanEnv("DOCKER_HOST=unix://"+d.Socket, "DOCKER_CONFIG="+cfg)
	cmd.Stdin = bytes.NewReader(tarball)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import busybox as %s: %v\n%s", ref, err, out)
	}
}

// Pid is dockerd's process id (benchmarks read its CPU time).
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }
