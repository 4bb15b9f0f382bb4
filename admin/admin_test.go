package admin_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/serve"
	"github.com/dockca/dockca/store"
)

const password = "admin-test-password"

// newHome makes a CA home.
func newHome(t *testing.T) string {
	t.Helper()
	home := dockerdtest.ShortTempDir(t)
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := ca.Init(context.Background(), st, ca.InitOptions{Password: []byte(password)}); err != nil {
		t.Fatal(err)
	}
	return home
}

// serveHome runs the service for home until the returned stop is called.
func serveHome(t *testing.T, home string) (stop func()) {
	t.Helper()
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := serve.New(context.Background(), st, []byte(password),
		serve.Options{Listen: "127.0.0.1:0", Home: home, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			st.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

func open(t *testing.T, home string) admin.Admin {
	t.Helper()
	adm, err := admin.Open(context.Background(), home, admin.OpenOptions{Writable: true,
		Password: func() ([]byte, error) { return []byte(password), nil }, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adm.Close() })
	return adm
}

// TestSameAnswersLocalAndThroughTheSocket runs the same operations on the
// database and through a running service: the errors match the same
// sentinels, token sets are all or nothing, and Open picks the socket
// while the service runs and the database once it has stopped.
func TestSameAnswersLocalAndThroughTheSocket(t *testing.T) {
	ctx := context.Background()
	home := newHome(t)
	stop := serveHome(t, home)
	remote := open(t, home)
	if _, ok := remote.(*admin.Client); !ok {
		t.Fatalf("Open chose %T while the service runs", remote)
	}
	check := func(adm admin.Admin) {
		t.Helper()
		if _, err := adm.Certificates(ctx, api.AdminCertificatesRequest{Arg: "nobody"}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%T: unknown name: %v", adm, err)
		}
		before, err := adm.Tokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = adm.CreateTokens(ctx, []api.TokenRequest{
			{Kind: "client", Name: "good", CAURL: "https://127.0.0.1:8443"},
			{Kind: "client", Name: "bad", Role: "deployer", CAURL: "https://127.0.0.1:8443"},
		})
		if !errors.Is(err, pki.ErrPolicy) {
			t.Errorf("%T: a set with an unknown role: %v", adm, err)
		}
		if after, _ := adm.Tokens(ctx); len(after) != len(before) {
			t.Errorf("%T: a refused set stored %d tokens", adm, len(after)-len(before))
		}
		if _, err := adm.Policy(ctx); !errors.Is(err, store.ErrNoPolicy) && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%T: no policy: %v", adm, err)
		}
		if _, err := adm.SetPolicy(ctx, []byte("roles: {x: {extends: x}}"), "t"); !errors.Is(err, admin.ErrInvalidPolicy) {
			t.Errorf("%T: invalid policy: %v", adm, err)
		}
		if _, err := adm.Issue(ctx, ca.Request{Kind: pki.KindClient, Name: "c", Role: "nope"}); !errors.Is(err, pki.ErrPolicy) {
			t.Errorf("%T: issue with an unknown role: %v", adm, err)
		}
		var buf bytes.Buffer
		n, err := adm.Backup(ctx, &buf)
		if err != nil || n != int64(buf.Len()) || n == 0 {
			t.Errorf("%T: backup %d bytes, %d written: %v", adm, n, buf.Len(), err)
		}
		copyPath := t.TempDir() + "/dockca.db"
		os.WriteFile(copyPath, buf.Bytes(), 0o600)
		st, err := store.Open(copyPath, &store.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("%T: the backup does not open: %v", adm, err)
		}
		rep, err := ca.Check(ctx, st, ca.CheckOptions{Password: []byte(password)})
		st.Close()
		if err != nil || !rep.OK() {
			t.Errorf("%T: the backup does not check: %v %+v", adm, err, rep)
		}
	}
	check(remote)
	remote.Close()
	stop()
	local := open(t, home)
	if _, ok := local.(*admin.Local); !ok {
		t.Fatalf("Open chose %T without a service", local)
	}
	check(local)
}
