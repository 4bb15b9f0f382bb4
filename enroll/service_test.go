package enroll_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// A daemon certificate of the same CA, even one naming the service's host,
// must not pass for the service: it could collect enrollment tokens.
func TestOnlyTheServiceCertificateIsTheService(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := ca.Init(ctx, st, ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	a, err := ca.Open(ctx, st, ca.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	impostor, err := a.Issue(ctx, ca.Request{Kind: pki.KindDaemon, Name: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := impostor.KeyPEM()
	pair, err := tls.X509KeyPair(impostor.ChainPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.PathRoots {
			w.Write(pki.PEMCert(a.Root()))
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()

	if _, err := enroll.FetchRoot(ctx, []string{srv.URL}); err == nil || !strings.Contains(err.Error(), "not a dockca service certificate") {
		t.Fatalf("FetchRoot from a daemon certificate: %v", err)
	}
	c, err := enroll.New([]string{srv.URL}, a.Root())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Issuers(ctx); err == nil || !strings.Contains(err.Error(), "not a dockca service certificate") {
		t.Fatalf("a client trusting the root talked to a daemon certificate: %v", err)
	}
	// The service's own certificate is marked as such.
	svc, err := a.IssueService(ctx, []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ou := svc.Leaf.Subject.OrganizationalUnit; len(ou) != 1 || ou[0] != pki.ServiceOU {
		t.Fatalf("service certificate OU %v", ou)
	}
}
