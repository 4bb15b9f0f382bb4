package serve_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/serve"
	"github.com/dockca/dockca/store"
)

const testPassword = "correct horse battery"

type testServer struct {
	*serve.Server
	home  string
	st    *store.Store
	admin *serve.AdminClient
	stop  func() error
	logs  *bytes.Buffer
}

// shortHome is a home whose socket path fits the 108-byte limit.
func shortHome(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "dkh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// startServer initialises a CA in a fresh home and serves it on a random
// loopback port until the test ends.
func startServer(t testing.TB, o serve.Options) *testServer {
	t.Helper()
	home := shortHome(t)
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := ca.Init(ctx, st, ca.InitOptions{Name: "test", Password: []byte(testPassword)}); err != nil {
		t.Fatal(err)
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	o.Home = home
	if o.SignRate == 0 {
		o.SignRate, o.SignBurst = 1000, 1000
	}
	logs := &bytes.Buffer{}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	srv, err := serve.New(ctx, st, []byte(testPassword), o)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	ts := &testServer{Server: srv, home: home, st: st, logs: logs}
	stopped := false
	var stopErr error
	ts.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
			st.Close()
		}
		return stopErr
	}
	t.Cleanup(func() { ts.stop() })
	if ts.admin, err = serve.DialAdmin(home); err != nil {
		t.Fatal(err)
	}
	return ts
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (ts *testServer) token(t testing.TB, req api.TokenRequest) string {
	t.Helper()
	resp, err := ts.admin.CreateToken(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.RootFingerprint != ts.RootFingerprint() || resp.CAURL != ts.URL() {
		t.Fatalf("token response names %s / %s", resp.CAURL, resp.RootFingerprint)
	}
	return resp.Token
}

func (ts *testServer) client(t testing.TB) *enroll.Client {
	t.Helper()
	c, err := enroll.Bootstrap(context.Background(), []string{ts.URL()}, ts.RootFingerprint())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// httpsClient trusts the test CA's root, optionally presenting cert.
func (ts *testServer) httpsClient(cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(ts.Authority().Root())
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func (ts *testServer) certCount(t testing.TB) int {
	t.Helper()
	certs, err := ts.st.List(context.Background(), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}

func tlsCert(t testing.TB, dir string) tls.Certificate {
	t.Helper()
	d, err := enroll.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d.Cert
}

func tempDir(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(t.TempDir(), name)
}
