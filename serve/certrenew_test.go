package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// TestServiceCertificateRenewedWhileServing lowers the renewal point so
// the service renews its own certificate at once, and checks a new TLS
// handshake gets the new certificate, recorded with kind service.
func TestServiceCertificateRenewedWhileServing(t *testing.T) {
	home, err := os.MkdirTemp("", "dkc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := ca.Init(ctx, st, ca.InitOptions{Password: []byte("password123")}); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, st, []byte("password123"), Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	first := s.cert.Load().Leaf
	s.certRenewAt = 0
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx) }()
	defer func() { cancel(); <-done }()

	pool := x509.NewCertPool()
	pool.AddCert(s.auth().Root())
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		got := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if got.SerialNumber.Cmp(first.SerialNumber) != 0 {
			rec, err := st.Certificate(ctx, got.SerialNumber)
			if err != nil || rec.Kind != pki.KindService {
				t.Fatalf("renewed service certificate record: %v %+v", err, rec)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the service certificate was not renewed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
