package store

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
)

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), FileName)
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, p
}

func rec(serial int64, name string, kind pki.Kind, notAfter time.Time) *Certificate {
	return &Certificate{
		Serial: pki.FormatSerial(big.NewInt(serial)), Name: name, Kind: kind, Role: "admin",
		NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter, IssuedAt: time.Unix(serial, 0).UTC(), DER: []byte{1, 2, 3},
	}
}

func TestSerialFormatting(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0a", 10, true}, {"0A", 10, true}, {"000a", 10, true}, {"00:0A", 10, true},
		{"ff:01", 0xff01, true}, {"0xff01", 0xff01, true}, {"", 0, false}, {"zz", 0, false}, {"0", 0, false},
	}
	for _, c := range cases {
		n, err := pki.ParseSerial(c.in)
		if (err == nil) != c.ok || (c.ok && n.Int64() != c.want) {
			t.Errorf("pki.ParseSerial(%q) = %v, %v", c.in, n, err)
		}
	}
	if got := pki.FormatSerial(big.NewInt(10)); got != "0a" {
		t.Errorf("pki.FormatSerial(10) = %q, want 0a (even digits, as openssl)", got)
	}
}

func TestRoundTripIndexesAndRevocation(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Now()
	for i, c := range []*Certificate{
		rec(1, "alice", pki.KindClient, now.Add(24*time.Hour)),
		rec(2, "alice", pki.KindClient, now.Add(-time.Hour)), // expired
		rec(3, "host1", pki.KindDaemon, now.Add(72*time.Hour)),
		rec(4, "alicex", pki.KindClient, now.Add(24*time.Hour)), // prefix of no one
	} {
		if err := s.PutCertificate(ctx, c); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if err := s.PutCertificate(ctx, rec(1, "mallory", pki.KindClient, now)); err == nil {
		t.Fatal("a second certificate with the same serial was stored")
	}
	got, err := s.Certificate(ctx, big.NewInt(3))
	if err != nil || got.Name != "host1" || got.Kind != pki.KindDaemon {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := s.Certificate(ctx, big.NewInt(99)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing serial: %v", err)
	}
	byName, err := s.CertificatesByName(ctx, "alice")
	if err != nil || len(byName) != 2 {
		t.Fatalf("by name: %d %v", len(byName), err)
	}
	if err := s.Revoke(ctx, big.NewInt(1), &Revocation{Reason: "key-compromise", ReasonCode: 1, RevokedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, big.NewInt(1), &Revocation{Reason: "superseded"}); !errors.Is(err, ErrAlreadyRevoked) {
		t.Fatalf("second revoke: %v", err)
	}
	rev, err := s.Revocation(ctx, big.NewInt(1))
	if err != nil || rev == nil || rev.Reason != "key-compromise" {
		t.Fatalf("revocation: %+v %v", rev, err)
	}
	if rev, _ := s.Revocation(ctx, big.NewInt(3)); rev != nil {
		t.Fatal("unrevoked certificate reported revoked")
	}
	for _, c := range []struct {
		f    Filter
		want int
	}{
		{Filter{}, 4},
		{Filter{Kind: pki.KindDaemon}, 1},
		{Filter{Status: StatusRevoked}, 1},
		{Filter{Status: StatusExpired}, 1},
		{Filter{Status: StatusValid}, 2},
		{Filter{ExpiringWithin: 48 * time.Hour}, 1},
	} {
		list, err := s.List(ctx, c.f)
		if err != nil || len(list) != c.want {
			t.Errorf("List(%+v) = %d, %v; want %d", c.f, len(list), err, c.want)
		}
	}
}

func TestConcurrentWritersGetUniqueDurableRecords(t *testing.T) {
	s, p := openTemp(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if err := s.PutCertificate(ctx, rec(int64(g*100+i+1), fmt.Sprintf("c%d", g), pki.KindClient, time.Now().Add(time.Hour))); err != nil {
					errs <- err
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(p, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	list, err := s2.List(ctx, Filter{})
	if err != nil || len(list) != 640 {
		t.Fatalf("after reopen: %d records, %v", len(list), err)
	}
}

func TestLockTimeoutAndCorruption(t *testing.T) {
	_, p := openTemp(t)
	start := time.Now()
	_, err := Open(p, &Options{LockTimeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("lock wait took %s", time.Since(start))
	}

	bad := filepath.Join(t.TempDir(), FileName)
	os.WriteFile(bad, make([]byte, 8192), 0o600)
	if _, err := Open(bad, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("zeroed file: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.db"), &Options{ReadOnly: true}); !errors.Is(err, ErrNoCA) {
		t.Fatalf("missing file read-only: %v", err)
	}
}

func TestCancelledContextChangesNothing(t *testing.T) {
	s, _ := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PutCertificate(ctx, rec(7, "x", pki.KindClient, time.Now())); !errors.Is(err, context.Canceled) {
		t.Fatalf("put with cancelled context: %v", err)
	}
	if list, _ := s.List(context.Background(), Filter{}); len(list) != 0 {
		t.Fatal("cancelled put stored a record")
	}
}

func TestTokensAndCRLNumbers(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	if err := s.MarkTokenUsed(ctx, "jti-1", "h"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkTokenUsed(ctx, "jti-1", "h"); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("replayed token: %v", err)
	}
	if err := s.PutCRL(ctx, &CRL{Number: 2, DER: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCRL(ctx, &CRL{Number: 2, DER: []byte{2}}); err == nil {
		t.Fatal("a CRL number was reused")
	}
	crl, err := s.CRL(ctx)
	if err != nil || crl.Number != 2 || crl.DER[0] != 1 {
		t.Fatalf("CRL: %+v %v", crl, err)
	}
}
