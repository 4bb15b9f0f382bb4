package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// The hand-built CRL is the one crypto/x509 makes for the same entries,
// to the byte of the signed part, for every key type dockca supports.
func TestSignCRLMatchesCryptoX509(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	var entries []store.RevokedEntry
	for i, s := range []string{"01", "7f", "80", "00ff", "4a3c9e0f11aa22bb33cc44dd55ee66ff77001122", "ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00", strings.Repeat("ab", 130)} {
		n, _ := new(big.Int).SetString(s, 16)
		at := now.Add(-time.Duration(i) * time.Hour)
		if i == 5 {
			at = time.Date(2051, 1, 2, 3, 4, 5, 0, time.UTC) // GeneralizedTime
		}
		entries = append(entries, store.RevokedEntry{Serial: n.Bytes(), RevokedAt: at, ReasonCode: []int{0, 1, 3, 4, 5, 1, 3}[i]})
	}
	for _, kt := range []pki.KeyType{pki.KeyECP256, pki.KeyECP384, pki.KeyRSA3072, pki.KeyEd25519} {
		t.Run(string(kt), func(t *testing.T) {
			_, a := newCA(t, kt, "")
			var buf []byte
			var x []x509.RevocationListEntry
			for _, e := range entries {
				var b bytes.Buffer
				appendCRLEntry(&b, e)
				buf = append(buf, b.Bytes()...)
				x = append(x, x509.RevocationListEntry{SerialNumber: new(big.Int).SetBytes(e.Serial), RevocationTime: e.RevokedAt, ReasonCode: e.ReasonCode})
			}
			ours, err := signCRL(a.intermediate, a.signer, 42, now, now.Add(CRLValidity), buf)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
				Number: big.NewInt(42), ThisUpdate: now, NextUpdate: now.Add(CRLValidity), RevokedCertificateEntries: x,
			}, a.intermediate, a.signer)
			if err != nil {
				t.Fatal(err)
			}
			o, err := x509.ParseRevocationList(ours)
			if err != nil {
				t.Fatal(err)
			}
			th, err := x509.ParseRevocationList(theirs)
			if err != nil {
				t.Fatal(err)
			}
			if string(o.RawTBSRevocationList) != string(th.RawTBSRevocationList) {
				t.Fatal("the signed part differs from crypto/x509's")
			}
			if err := o.CheckSignatureFrom(a.intermediate); err != nil {
				t.Fatalf("signature: %v", err)
			}
		})
	}
}

// Revocations made together are all in the CRL each of them returns
// with, and share regenerations; the CRL number still only grows.
func TestConcurrentRevocationsShareCRL(t *testing.T) {
	st, a := newCA(t, pki.KeyECP256, "")
	ctx := context.Background()
	const n = 24
	var issued []*Issued
	for i := range n {
		iss, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: fmt.Sprintf("r%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		issued = append(issued, iss)
	}
	before, err := st.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, iss := range issued {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Revoke(ctx, iss.Leaf.SerialNumber, pki.Reason{Name: "superseded", Code: 4}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Once the last Revoke has returned, the stored CRL is current and
	// lists every one of them: nothing waits for a later regeneration.
	cur, err := CurrentCRL(ctx, st, time.Now())
	if err != nil || cur == nil {
		t.Fatalf("stored CRL not current after the revocations returned: %v", err)
	}
	rl, err := x509.ParseRevocationList(cur.DER)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range rl.RevokedCertificateEntries {
		listed[pki.FormatSerial(e.SerialNumber)] = true
	}
	for _, iss := range issued {
		if !listed[iss.Record.Serial] {
			t.Errorf("revocation of %s missing from the CRL", iss.Record.Serial)
		}
	}
	gens := cur.Number - before.Number
	if gens < 1 || gens >= n {
		t.Errorf("%d revocations made %d CRLs; want at least one and fewer than one each", n, gens)
	}
	t.Logf("%d concurrent revocations, %d CRL generations", n, gens)
}

// BenchmarkCRL100k measures, with 100,000 revoked certificates and fsync
// on, generating a CRL and one revocation (which regenerates it).
//
//	go test -tags nobadger,nomysql,nopgx -run '^$' -bench CRL100k -benchtime 5x ./ca/
func BenchmarkCRL100k(b *testing.B) {
	st, a := newCA(b, pki.KeyECP256, "")
	ctx := context.Background()
	populateRevoked(b, st, 100000)
	b.Run("generate", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.GenerateCRL(ctx); err != nil {
				b.Fatal(err)
			}
		}
		crl, _ := st.CRL(ctx)
		b.ReportMetric(float64(len(crl.DER))/1e6, "MB")
	})
	b.Run("revoke", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			iss, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "victim"})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := a.Revoke(ctx, iss.Leaf.SerialNumber, pki.Reason{Name: "key-compromise", Code: 1}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// populateRevoked stores n revoked certificate records (their DER is not
// a certificate: only the CRL and listings read them).
func populateRevoked(t testing.TB, st *store.Store, n int) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 64 {
				sn := new(big.Int).Lsh(big.NewInt(int64(i+1)), 100)
				serial := pki.FormatSerial(sn)
				c := &store.Certificate{Serial: serial, Name: fmt.Sprintf("bulk%d", i), Kind: pki.KindClient, Role: pki.RoleAdmin,
					NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour), IssuedAt: now, DER: []byte{0x30, 0}}
				if err := st.PutCertificate(ctx, c); err != nil {
					errs <- err
					return
				}
				if err := st.Revoke(ctx, sn, &store.Revocation{ReasonCode: 4, Reason: "superseded", RevokedAt: now, ExpiresAt: c.NotAfter}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// `revoke A B C` makes one CRL, and opening the authority again (a
// restart of serve) makes none while the stored one is current.
func TestRevokeTargetsOneCRLAndOpenKeepsCurrent(t *testing.T) {
	st, a := newCA(t, pki.KeyECP256, "")
	ctx := context.Background()
	var args []string
	for i := range 3 {
		iss, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: fmt.Sprintf("abc%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, iss.Record.Serial)
	}
	before, err := st.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.RevokeTargets(ctx, args, pki.Reason{Name: "superseded", Code: 4})
	if err != nil || len(res) != 3 {
		t.Fatalf("revoke: %d results, %v", len(res), err)
	}
	after, err := st.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Number != before.Number+1 {
		t.Fatalf("revoking 3 made %d CRLs, want 1", after.Number-before.Number)
	}
	rl, err := x509.ParseRevocationList(after.DER)
	if err != nil || len(rl.RevokedCertificateEntries) != 3 {
		t.Fatalf("CRL lists %d entries (%v), want 3", len(rl.RevokedCertificateEntries), err)
	}
	a2, err := Open(ctx, st, OpenOptions{Actor: "test", CRL: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if again, err := st.CRL(ctx); err != nil || again.Number != after.Number {
		t.Fatalf("reopening regenerated a current CRL: %v", err)
	}
}

// TestMakeRevokedHome builds a dockca home for timing the CLI by hand: a
// CA (keys encrypted under DOCKCA_REVOKED_HOME_PASSWORD, or a development
// CA without it) with 100,000 revoked certificates and one valid client
// certificate, whose serial it prints. Not part of the
// default run:
//
//	DOCKCA_REVOKED_HOME=/tmp/h go test -tags nobadger,nomysql,nopgx -run TestMakeRevokedHome -v ./ca/
//	time ./dockca --home /tmp/h revoke SERIAL
func TestMakeRevokedHome(t *testing.T) {
	home := os.Getenv("DOCKCA_REVOKED_HOME")
	if home == "" {
		t.Skip("set DOCKCA_REVOKED_HOME=DIR to build the home")
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	pw := []byte(os.Getenv("DOCKCA_REVOKED_HOME_PASSWORD"))
	if _, err := Init(ctx, st, InitOptions{Name: "bench", Password: pw}); err != nil {
		t.Fatal(err)
	}
	a, err := Open(ctx, st, OpenOptions{Actor: "bench", CRL: true, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	populateRevoked(t, st, 100000)
	if _, err := a.GenerateCRL(ctx); err != nil {
		t.Fatal(err)
	}
	iss, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("home %s: 100,000 revoked; revoke %s", home, iss.Record.Serial)
}
