package enroll_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/serve"
	"github.com/dockca/dockca/store"
)

const password = "watch-test-password"

// service starts dockca serve for home on listen and returns a stop func.
func service(t *testing.T, home, listen string) (*serve.Server, func()) {
	t.Helper()
	return serviceLogged(t, home, listen, slog.New(slog.DiscardHandler))
}

// serviceLogged is service logging to log.
func serviceLogged(t *testing.T, home, listen string, log *slog.Logger) (*serve.Server, func()) {
	t.Helper()
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := serve.New(context.Background(), st, []byte(password), serve.Options{
		Listen: listen, Home: home, Logger: log})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); st.Close(); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return srv, stop
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestWatchSurvivesAnUnreachableCA: the watcher keeps retrying while the
// service is down, renews once it is back, and runs the hook after each
// renewal.
func TestWatchSurvivesAnUnreachableCA(t *testing.T) {
	home, err := os.MkdirTemp("", "dkw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Init(context.Background(), st, ca.InitOptions{Password: []byte(password)}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	srv, stop := service(t, home, "127.0.0.1:0")
	addr := srv.Addr()
	ac, err := serve.DialAdmin(home)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ac.CreateToken(context.Background(), api.TokenRequest{Kind: "daemon", Name: "localhost", SANs: []string{"127.0.0.1"}, CertTTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	// The directory records a dead URL first: the backoff and the recovery
	// go through the failover.
	c, err := enroll.Bootstrap(context.Background(), []string{deadURL(t), srv.URL()}, tok.RootFingerprint)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Enroll(context.Background(), tok.Token, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	if err := enroll.WriteDir(dir, c, res); err != nil {
		t.Fatal(err)
	}
	stop() // the CA goes away

	hookLog := filepath.Join(t.TempDir(), "hook.log")
	var logs syncBuf
	errc := make(chan error, 1)
	go func() {
		errc <- enroll.Watch(context.Background(), enroll.WatchOptions{
			Dir: dir, Fraction: 0.01, Jitter: -1, MinBackoff: 100 * time.Millisecond, MaxBackoff: 400 * time.Millisecond,
			MaxRenewals: 2, Exec: `echo "$DOCKCA_SERIAL" >> ` + hookLog,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "will retry") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "the CA may be unreachable") {
		t.Fatalf("no retry log line:\n%s", logs.String())
	}
	service(t, home, addr) // back, on the same address
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("watch did not renew after the CA came back:\n%s", logs.String())
	}
	b, err := os.ReadFile(hookLog)
	if err != nil || len(strings.Fields(string(b))) != 2 {
		t.Fatalf("hook runs: %v %q", err, b)
	}
	d, err := enroll.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(b))[1]; pki.FormatSerial(d.Leaf.SerialNumber) != got {
		t.Fatalf("hook saw serial %s, directory holds %x", got, d.Leaf.SerialNumber)
	}
	if d.Leaf.SerialNumber.Cmp(res.Leaf.SerialNumber) == 0 {
		t.Fatal("certificate not replaced")
	}
}
