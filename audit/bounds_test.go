package audit

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// TestClosedRangeIsFast sweeps a /29 of loopback addresses on a port
// nothing listens on: refused connections must not cost the timeout.
func TestClosedRangeIsFast(t *testing.T) {
	port := dockerdtest.FreePort(t, "127.0.0.1")
	eps, err := ParseTargets([]string{"127.0.0.8/29"}, []int{port})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := Run(context.Background(), eps, Options{Timeout: 3 * time.Second})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("a closed /29 took %s", elapsed)
	}
	if len(r.Targets) != 8 || len(r.Findings) != 0 {
		t.Fatalf("report = %+v", r)
	}
	for _, tr := range r.Targets {
		if tr.State != StateClosed {
			t.Errorf("%s:%d is %s, want closed", tr.Target, tr.Port, tr.State)
		}
	}
	if ExitCode(r, err, High) != ExitOK {
		t.Error("closed ports must not fail the audit")
	}
}

// silentListener accepts connections and never writes, like a filtered or
// stuck service; it records how long each connection stayed open.
type silentListener struct {
	ln    net.Listener
	mu    sync.Mutex
	spans [][2]time.Time
}

func newSilent(t *testing.T) *silentListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentListener{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				opened := time.Now()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				c.Close()
				s.mu.Lock()
				s.spans = append(s.spans, [2]time.Time{opened, time.Now()})
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

func (s *silentListener) endpoint(t *testing.T) Endpoint {
	return endpointOf(t, s.ln.Addr().String())
}

func TestSilentPortCostsBoundedTime(t *testing.T) {
	s := newSilent(t)
	timeout := 300 * time.Millisecond
	start := time.Now()
	r, err := Run(context.Background(), []Endpoint{s.endpoint(t)}, Options{Timeout: timeout})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Plain HTTP and TLS each wait at most one timeout.
	if elapsed := time.Since(start); elapsed > 2*timeout+500*time.Millisecond {
		t.Errorf("a silent port took %s", elapsed)
	}
	tr := r.Targets[0]
	if tr.State != StateOpen || tr.Protocol != ProtoUnknown || len(r.Findings) != 0 {
		t.Errorf("report = %+v", r)
	}
}

// TestConcurrencyBound checks that no more than Concurrency connections
// are open at once, from the servers' side.
func TestConcurrencyBound(t *testing.T) {
	var eps []Endpoint
	var servers []*silentListener
	for range 6 {
		s := newSilent(t)
		servers = append(servers, s)
		eps = append(eps, s.endpoint(t))
	}
	if _, err := Run(context.Background(), eps, Options{Timeout: 300 * time.Millisecond, Concurrency: 2}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Servers record a span when they see the close, which can come just
	// after Run returns.
	var total int
	for wait := time.Now().Add(2 * time.Second); time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
		total = 0
		for _, s := range servers {
			s.mu.Lock()
			total += len(s.spans)
			s.mu.Unlock()
		}
		if total == 12 {
			break
		}
	}
	// The servers notice a close a little after the client made it, so
	// shorten each span by a margin before counting overlaps.
	type event struct {
		at    time.Time
		delta int
	}
	var events []event
	for _, s := range servers {
		s.mu.Lock()
		for _, sp := range s.spans {
			events = append(events, event{sp[0], 1}, event{sp[1].Add(-50 * time.Millisecond), -1})
		}
		s.mu.Unlock()
	}
	if total != 12 {
		t.Fatalf("servers saw %d connections, want 2 per silent endpoint", total)
	}
	slices.SortFunc(events, func(a, b event) int { return a.at.Compare(b.at) })
	inFlight, most := 0, 0
	for _, e := range events {
		inFlight += e.delta
		most = max(most, inFlight)
	}
	if most > 2 {
		t.Fatalf("%d connections in flight with Concurrency 2", most)
	}
	if most < 2 {
		t.Fatalf("only %d connection in flight: the run did not use its concurrency", most)
	}
}

// TestDeadline stops a run that would take too long and reports it as
// incomplete rather than clean.
func TestDeadline(t *testing.T) {
	var eps []Endpoint
	for range 4 {
		eps = append(eps, newSilent(t).endpoint(t))
	}
	start := time.Now()
	r, err := Run(context.Background(), eps, Options{Timeout: 300 * time.Millisecond, Concurrency: 1, Deadline: 700 * time.Millisecond})
	if elapsed := time.Since(start); elapsed > 1500*time.Millisecond {
		t.Errorf("run with a 700ms deadline took %s", elapsed)
	}
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v, want ErrIncomplete", err)
	}
	if len(r.Targets) != 4 {
		t.Fatalf("targets = %+v", r.Targets)
	}
	counts := r.Counts()
	if counts[StateOpen] != 1 || counts[StateError]+counts[StateSkipped] != 3 {
		t.Errorf("states = %v, want 1 open and 3 not audited", counts)
	}
	if ExitCode(r, err, High) != ExitError {
		t.Error("an incomplete audit must exit 1")
	}
}

func TestDefaultDeadline(t *testing.T) {
	o := Options{Timeout: time.Second, Concurrency: 64}
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 64: 5 * time.Second, 65: 9 * time.Second, 8: 5 * time.Second} {
		if got := DefaultDeadline(n, o); got != want {
			t.Errorf("DefaultDeadline(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestParseRootsPEM(t *testing.T) {
	ca := newTestCA(t, "roots")
	dir := t.TempDir()
	caFile, certFile, _ := writeFiles(t, dir, ca.root, "", ca.serverLeaf(t))
	data, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := ParseRootsPEM(data)
	if err != nil || len(roots) != 1 || !roots[0].Equal(ca.root) {
		t.Fatalf("ParseRootsPEM = %v, %v", roots, err)
	}
	chain, _ := os.ReadFile(certFile)
	if roots, err := ParseRootsPEM(chain); err != nil || len(roots) != 2 {
		t.Fatalf("ParseRootsPEM(chain) = %d certs, %v", len(roots), err)
	}
	if _, err := ParseRootsPEM([]byte("not pem")); err == nil {
		t.Fatal("ParseRootsPEM accepted garbage")
	}
}
