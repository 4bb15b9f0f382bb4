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
	Bin  string // the dockca binary
	Home string // its home (the admin socket is there)
	URL  string
	FP   string // root SHA-256 fingerprint

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
func Start(t testing.TB, bin string) *Service {
	t.Helper()
	dir, err := os.MkdirTemp("", "dks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return StartAt(t, bin, dir+"/home", "127.0.0.1:0")
}

// StartAt starts bin serve on home, listening on listen, and waits for its
// banner. A home holding a copy of another service's database (`dockca
// backup`) makes a second service of the same CA: a stand-in for a replica
// until replicas share a database.
func StartAt(t testing.TB, bin, home, listen string) *Service {
	t.Helper()
	s := &Service{Bin: bin, Home: home, logs: &dockerdtest.LockedBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "--home", s.Home, "serve", "--no-password", "--listen", listen, "--log-format", "json")
	s.cmd.Env = os.Environ()
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
	cmd := exec.Command(s.Bin, append([]string{"--home", s.Home, "token", "create"}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("token create %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// Logs is what the service wrote to stderr so far.
func (s *Service) Logs() string { return s.logs.String() }

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
