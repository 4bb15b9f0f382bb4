// Package servetest runs a real `dockca serve` process for end-to-end
// tests: a fresh home initialised on first start (without a password), a
// random loopback port, and the URL and root fingerprint read from the
// banner the service prints, as an operator would read them.
package servetest

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// Service is a running dockca serve.
type Service struct {
	Bin   string // the dockca binary
	Home  string // its home (the admin socket is there)
	URL   string
	FP    string // root SHA-256 fingerprint
	Store string // --store, when not the home's file

	cmd  *exec.Cmd
	logs *dockerdtest.LockedBuffer
	done chan error
}

var (
	urlRE = regexp.MustCompile(`URL:\s+(https://\S+)`)
	fpRE  = regexp.MustCompile(`Root fingerprint:\s+([0-9a-f]{64})`)
)

// Start starts bin serve in a new home under a short temp dir and waits
// for its banner. The service is killed when the test ends.
func Start(t testing.TB, bin string) *Service { return StartWith(t, bin, Options{}) }

// Options tune StartWith.
type Options struct {
	// Store is the --store URL (empty: the home's bbolt file). Replicas
	// share one etcd store and each has its own home.
	Store string
	// Env is added to the service's environment.
	Env []string
	// Args are more flags of serve.
	Args []string
	// Home and Listen, for StartAt (StartWith makes a new home and
	// listens on a free loopback port).
	Home, Listen string
}

// StartWith is Start with options.
func StartWith(t testing.TB, bin string, o Options) *Service {
	t.Helper()
	dir, err := os.MkdirTemp("", "dks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o.Home = dir + "/home"
	return startService(t, bin, o)
}

// StartAt starts bin serve on home, listening on listen, and waits for its
// banner. A home holding a copy of another service's database (`dockca
// backup`) makes a second service of the same CA: a stand-in for a second
// replica when the test is not about a shared store.
func StartAt(t testing.TB, bin, home, listen string) *Service {
	t.Helper()
	return startService(t, bin, Options{Home: home, Listen: listen})
}

func startService(t testing.TB, bin string, o Options) *Service {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	s := &Service{Bin: bin, Home: o.Home}
	args := []string{"--home", s.Home}
	if o.Store != "" {
		args = append(args, "--store", o.Store)
		s.Store = o.Store
	}
	args = append(args, "serve", "--no-password", "--listen", o.Listen, "--log-format", "json")
	cmd := exec.Command(bin, append(args, o.Args...)...)
	cmd.Env = append(os.Environ(), o.Env...)
	return Run(t, cmd, s)
}

// Run starts cmd, a dockca serve command line made elsewhere (a unit's
// ExecStart, say), and waits for its banner; s carries what the caller
// knows of it (Bin, Home, Store), or is nil. The service is killed when
// the test ends.
func Run(t testing.TB, cmd *exec.Cmd, s *Service) *Service {
	t.Helper()
	if s == nil {
		s = &Service{}
	}
	s.cmd, s.logs, s.done = cmd, &dockerdtest.LockedBuffer{}, make(chan error, 1)
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		s.done <- nil
	})
	var banner strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		banner.WriteString(sc.Text() + "\n")
		if m := urlRE.FindStringSubmatch(sc.Text()); m != nil {
			s.URL = m[1]
		}
		if m := fpRE.FindStringSubmatch(sc.Text()); m != nil {
			s.FP = m[1]
		}
		if strings.HasPrefix(sc.Text(), "Mint a one-time token") {
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if s.URL == "" || s.FP == "" {
		t.Fatalf("no URL or fingerprint in the banner of dockca serve:\n%s\n%s", banner.String(), s.logs.String())
	}
	return s
}

// Token mints a one-time token with `dockca token create ARGS` (through
// the admin socket).
func (s *Service) Token(t testing.TB, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	global := []string{"--home", s.Home}
	if s.Store != "" {
		global = append(global, "--store", s.Store)
	}
	cmd := exec.Command(s.Bin, append(append(global, "token", "create"), args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("token create %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// Logs is what the service wrote to stderr so far.
func (s *Service) Logs() string { return s.logs.String() }

// Kill stops the service with SIGKILL, as a crash would.
func (s *Service) Kill() {
	_ = s.cmd.Process.Kill()
	err := <-s.done
	s.done <- err
}

// Stop sends SIGTERM and fails the test unless the service exits cleanly.
func (s *Service) Stop(t testing.TB) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Fatalf("dockca serve exit: %v\n%s", err, s.Logs())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("dockca serve did not stop on SIGTERM")
	}
}
