// Package storetest is the conformance suite of dockca's store: every
// clause of the kv contract (package store/kv) and every atomicity rule
// of the store's domain (a token spent with its certificate, a renewal
// refused once its source is revoked, CRL numbers that only grow, a serial
// stored once, revocations counted once), checked on one backend,
// including under concurrency. Each backend's tests call Run and RunKV;
// a backend passes only if both pass.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
	"github.com/dockca/dockca/store/kv"
)

// Opener returns a new, empty, prepared store (closed by the test's
// cleanup).
type Opener func(t testing.TB) *store.Store

func rec(serial int64, name string, kind pki.Kind, notAfter time.Time) *store.Certificate {
	return &store.Certificate{
		Serial: pki.FormatSerial(big.NewInt(serial)), Name: name, Kind: kind, Role: "admin",
		NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter, IssuedAt: time.Unix(serial, 0).UTC(), DER: []byte{1, 2, 3},
	}
}

// race runs op n times at once and returns how many calls succeeded; a
// failure that does not match loser (when loser is set) fails the test.
func race(t *testing.T, n int, loser error, op func(i int) error) int {
	t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := op(i); {
			case err == nil:
				wins.Add(1)
			case loser != nil && !errors.Is(err, loser):
				t.Errorf("a losing call failed with %v, want %v", err, loser)
			}
		}()
	}
	wg.Wait()
	return int(wins.Load())
}

// Run checks the store's domain contract.
func Run(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("CA", func(t *testing.T) {
		s := open(t)
		if _, err := s.CA(ctx); !errors.Is(err, store.ErrNoCA) || !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("CA on an empty store = %v, want ErrNoCA (and ErrNotFound)", err)
		}
		ca := &store.CA{Name: "test", KeyType: "ec-p256", RootDER: []byte{1}, CreatedAt: time.Now().UTC()}
		if err := s.InitCA(ctx, ca); err != nil {
			t.Fatal(err)
		}
		if err := s.InitCA(ctx, ca); !errors.Is(err, store.ErrCAExists) {
			t.Fatalf("second InitCA = %v, want ErrCAExists", err)
		}
		if err := s.UpdateCA(ctx, func(c *store.CA) error { c.Name = "renamed"; return nil }); err != nil {
			t.Fatal(err)
		}
		if got, err := s.CA(ctx); err != nil || got.Name != "renamed" {
			t.Fatalf("CA after UpdateCA = %+v, %v", got, err)
		}
		boom := errors.New("boom")
		if err := s.UpdateCA(ctx, func(c *store.CA) error { c.Name = "lost"; return boom }); !errors.Is(err, boom) {
			t.Fatalf("UpdateCA returning an error = %v, want it unchanged", err)
		}
		if got, _ := s.CA(ctx); got.Name != "renamed" {
			t.Fatalf("a failed UpdateCA changed the record: %q", got.Name)
		}
	})

	t.Run("SerialStoredOnce", func(t *testing.T) {
		s := open(t)
		now := time.Now()
		c := rec(7, "alice", pki.KindClient, now.Add(time.Hour))
		if err := s.PutCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
		other := rec(7, "mallory", pki.KindClient, now.Add(time.Hour))
		if err := s.PutCertificate(ctx, other); err == nil {
			t.Fatal("a second record under the same serial was stored")
		}
		got, err := s.Certificate(ctx, big.NewInt(7))
		if err != nil || got.Name != "alice" {
			t.Fatalf("Certificate(7) = %+v, %v", got, err)
		}
		if _, err := s.Certificate(ctx, big.NewInt(8)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Certificate(8) = %v, want ErrNotFound", err)
		}
		// The same serial raced from many goroutines: stored once.
		if wins := race(t, 16, nil, func(i int) error {
			return s.PutCertificate(ctx, rec(9, fmt.Sprintf("n%d", i), pki.KindClient, now.Add(time.Hour)))
		}); wins != 1 {
			t.Fatalf("%d writers stored serial 9, want exactly 1", wins)
		}
		byName, err := s.List(ctx, store.Filter{})
		if err != nil || len(byName) != 2 {
			t.Fatalf("List = %d records, %v; want 2", len(byName), err)
		}
	})

	t.Run("TokenSpentWithItsCertificate", func(t *testing.T) {
		s := open(t)
		now := time.Now()
		const n = 50
		if wins := race(t, n, store.ErrTokenUsed, func(i int) error {
			c := rec(int64(100+i), "host", pki.KindDaemon, now.Add(time.Hour))
			c.TokenID = "tok-1"
			return s.PutCertificate(ctx, c)
		}); wins != 1 {
			t.Fatalf("%d certificates bought with one token, want exactly 1", wins)
		}
		all, err := s.List(ctx, store.Filter{})
		if err != nil || len(all) != 1 {
			t.Fatalf("%d certificates stored (%v), want 1: a refused one must leave nothing", len(all), err)
		}
		used, err := s.TokenUsed(ctx, "tok-1")
		if err != nil || used == nil || used.Serial != all[0].Serial {
			t.Fatalf("TokenUsed = %+v, %v; want spent on %s", used, err, all[0].Serial)
		}
		if err := s.MarkTokenUsed(ctx, "tok-1", "x"); !errors.Is(err, store.ErrTokenUsed) {
			t.Fatalf("MarkTokenUsed on a spent token = %v", err)
		}
	})

	t.Run("RenewalRefusedAfterRevocation", func(t *testing.T) {
		s := open(t)
		now := time.Now()
		src := rec(20, "bob", pki.KindClient, now.Add(time.Hour))
		if err := s.PutCertificate(ctx, src); err != nil {
			t.Fatal(err)
		}
		ok := rec(21, "bob", pki.KindClient, now.Add(2*time.Hour))
		ok.RenewedFrom = src.Serial
		if err := s.PutCertificate(ctx, ok); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Certificate(ctx, big.NewInt(20)); got.SupersededBy != ok.Serial || got.Status(now) != store.StatusSuperseded {
			t.Fatalf("source after renewal: superseded by %q, status %s", got.SupersededBy, got.Status(now))
		}
		if rs, err := s.RenewalsOf(ctx, src.Serial, now); err != nil || len(rs) != 1 || rs[0].Serial != ok.Serial {
			t.Fatalf("RenewalsOf = %v, %v", rs, err)
		}
		if err := s.Revoke(ctx, big.NewInt(20), &store.Revocation{ReasonCode: 1, Reason: "key-compromise", RevokedAt: now}); err != nil {
			t.Fatal(err)
		}
		late := rec(22, "bob", pki.KindClient, now.Add(2*time.Hour))
		late.RenewedFrom = src.Serial
		if err := s.PutCertificate(ctx, late); !errors.Is(err, store.ErrRenewedFromRevoked) {
			t.Fatalf("renewal of a revoked certificate = %v, want ErrRenewedFromRevoked", err)
		}
		if _, err := s.Certificate(ctx, big.NewInt(22)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the refused renewal was stored: %v", err)
		}
		// Raced: revocation against many renewals; every renewal that
		// was stored was stored before the revocation.
		src2 := rec(30, "carol", pki.KindClient, now.Add(time.Hour))
		if err := s.PutCertificate(ctx, src2); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rec(int64(31+i), "carol", pki.KindClient, now.Add(2*time.Hour))
				r.RenewedFrom = src2.Serial
				err := s.PutCertificate(ctx, r)
				if err != nil && !errors.Is(err, store.ErrRenewedFromRevoked) {
					t.Errorf("renewal: %v", err)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Revoke(ctx, big.NewInt(30), &store.Revocation{ReasonCode: 1, RevokedAt: now}); err != nil {
				t.Errorf("revoke: %v", err)
			}
		}()
		wg.Wait()
		// Renewals stored after the revocation would be a bypass: every
		// stored renewal must have been issued while the source was
		// still good, which the store proves by having refused the rest.
		rs, err := s.RenewalsOf(ctx, src2.Serial, now)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := s.Revocation(ctx, big.NewInt(30)); err != nil || r == nil {
			t.Fatalf("revocation of 30 = %v, %v", r, err)
		}
		late2 := rec(99, "carol", pki.KindClient, now.Add(2*time.Hour))
		late2.RenewedFrom = src2.Serial
		if err := s.PutCertificate(ctx, late2); !errors.Is(err, store.ErrRenewedFromRevoked) {
			t.Fatalf("renewal after the race = %v", err)
		}
		if rs2, _ := s.RenewalsOf(ctx, src2.Serial, now); len(rs2) != len(rs) {
			t.Fatalf("renewals grew after the revocation: %d -> %d", len(rs), len(rs2))
		}
	})

	t.Run("RevokeOnceAndCounted", func(t *testing.T) {
		s := open(t)
		now := time.Now()
		for i := int64(1); i <= 3; i++ {
			if err := s.PutCertificate(ctx, rec(i, "c", pki.KindClient, now.Add(time.Hour))); err != nil {
				t.Fatal(err)
			}
		}
		seq0, err := s.RevocationSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if wins := race(t, 20, store.ErrAlreadyRevoked, func(int) error {
			return s.Revoke(ctx, big.NewInt(2), &store.Revocation{ReasonCode: 4, Reason: "superseded", RevokedAt: now, ExpiresAt: now.Add(time.Hour)})
		}); wins != 1 {
			t.Fatalf("%d revocations of one serial succeeded, want 1", wins)
		}
		seq1, _ := s.RevocationSeq(ctx)
		if seq1 != seq0+1 {
			t.Fatalf("revocation counter went %d -> %d, want +1", seq0, seq1)
		}
		revoked, err := s.List(ctx, store.Filter{Status: store.StatusRevoked, Now: now})
		if err != nil || len(revoked) != 1 || revoked[0].Revocation == nil || revoked[0].Revocation.Reason != "superseded" {
			t.Fatalf("revoked list = %v, %v", revoked, err)
		}
		var entries int
		seq, err := s.ScanRevoked(ctx, func(e store.RevokedEntry) error {
			entries++
			if new(big.Int).SetBytes(e.Serial).Int64() != 2 || e.ReasonCode != 4 {
				t.Errorf("CRL entry %x reason %d", e.Serial, e.ReasonCode)
			}
			return nil
		})
		if err != nil || entries != 1 || seq != seq1 {
			t.Fatalf("ScanRevoked: %d entries, seq %d (%v), want 1 at %d", entries, seq, err, seq1)
		}
		if last, err := s.LastRevocation(ctx); err != nil || last.IsZero() {
			t.Fatalf("LastRevocation = %v, %v", last, err)
		}
	})

	t.Run("CRLNumbersOnlyGrow", func(t *testing.T) {
		s := open(t)
		if _, err := s.CRL(ctx); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("CRL on an empty store = %v, want ErrNotFound", err)
		}
		put := func(n int64, size int) error {
			der := make([]byte, size)
			_, _ = rand.Read(der)
			return s.PutCRL(ctx, &store.CRL{Number: n, ThisUpdate: time.Now().UTC(), NextUpdate: time.Now().Add(time.Hour).UTC(), DER: der, RevocationSeq: uint64(n)})
		}
		if err := put(5, 100); err != nil {
			t.Fatal(err)
		}
		if err := put(5, 100); err == nil {
			t.Fatal("a CRL with the same number was stored")
		}
		if err := put(4, 100); err == nil {
			t.Fatal("a CRL with a lower number was stored")
		}
		// Writers racing with numbers 6..25: the stored number ends at
		// the highest, and no accepted write went below its
		// predecessor.
		var wg sync.WaitGroup
		for n := int64(6); n <= 25; n++ {
			wg.Add(1)
			go func() { defer wg.Done(); _ = put(n, 64) }()
		}
		wg.Wait()
		h, err := s.CRLHeader(ctx)
		if err != nil || h.Number != 25 {
			t.Fatalf("CRL number after the race = %v, %v; want 25", h, err)
		}
		// A CRL of megabytes (100,000 revocations) survives whole.
		der := make([]byte, 3<<20)
		_, _ = rand.Read(der)
		if err := s.PutCRL(ctx, &store.CRL{Number: 26, DER: der, RevocationSeq: 26}); err != nil {
			t.Fatal(err)
		}
		got, err := s.CRL(ctx)
		if err != nil || got.Number != 26 || !bytes.Equal(got.DER, der) {
			t.Fatalf("large CRL read back: number %v, %d bytes, %v", got.Number, len(got.DER), err)
		}
		if err := put(27, 10); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.CRL(ctx); got.Number != 27 || len(got.DER) != 10 {
			t.Fatalf("CRL after replacing the large one: %d, %d bytes", got.Number, len(got.DER))
		}
	})

	t.Run("TokensAllOrNone", func(t *testing.T) {
		s := open(t)
		mk := func(ids ...string) []*store.Token {
			var ts []*store.Token
			for _, id := range ids {
				ts = append(ts, &store.Token{ID: id, Kind: "client", Name: id, CreatedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(time.Hour).UTC()})
			}
			return ts
		}
		if err := s.PutTokens(ctx, mk("a", "b", "c")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutTokens(ctx, mk("d", "b", "e")); err == nil {
			t.Fatal("a set repeating an ID was stored")
		}
		ts, err := s.Tokens(ctx)
		if err != nil || len(ts) != 3 {
			t.Fatalf("Tokens = %d (%v), want 3: the refused set must leave nothing", len(ts), err)
		}
	})

	t.Run("Cancelled", func(t *testing.T) {
		s := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.PutCertificate(cctx, rec(1, "x", pki.KindClient, time.Now().Add(time.Hour))); !errors.Is(err, context.Canceled) {
			t.Fatalf("PutCertificate with a cancelled context = %v", err)
		}
		if _, err := s.Certificate(ctx, big.NewInt(1)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a cancelled write changed the store: %v", err)
		}
	})

	t.Run("SettingsAndPolicy", func(t *testing.T) {
		s := open(t)
		if v, err := s.Setting(ctx, "k"); err != nil || v != nil {
			t.Fatalf("unset setting = %q, %v", v, err)
		}
		if err := s.SetSetting(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if v, _ := s.Setting(ctx, "k"); string(v) != "v" {
			t.Fatalf("setting = %q", v)
		}
		// A read marked StaleOK may lag, but only briefly.
		deadline := time.Now().Add(2 * time.Second)
		for {
			v, err := s.Setting(store.StaleOK(ctx), "k")
			if err != nil {
				t.Fatal(err)
			}
			if string(v) == "v" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a StaleOK read still sees %q after 2 s", v)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := s.Policy(ctx); !errors.Is(err, store.ErrNoPolicy) {
			t.Fatalf("Policy = %v, want ErrNoPolicy", err)
		}
		if err := s.SetPolicy(ctx, &store.Policy{YAML: []byte("roles: {}\n")}); err != nil {
			t.Fatal(err)
		}
		if p, err := s.Policy(ctx); err != nil || string(p.YAML) != "roles: {}\n" || p.SHA256 == "" {
			t.Fatalf("Policy = %+v, %v", p, err)
		}
	})

	t.Run("ListsAndIndexes", func(t *testing.T) {
		s := open(t)
		now := time.Now().Truncate(time.Second)
		for i := int64(1); i <= 30; i++ {
			na := now.Add(time.Duration(i) * 24 * time.Hour)
			if i <= 5 {
				na = now.Add(-time.Duration(i) * time.Hour) // expired
			}
			kind := pki.KindClient
			if i%2 == 0 {
				kind = pki.KindDaemon
			}
			if err := s.PutCertificate(ctx, rec(i, fmt.Sprintf("n%d", i%4), kind, na)); err != nil {
				t.Fatal(err)
			}
		}
		count := func(f store.Filter) int {
			f.Now = now
			cs, err := s.List(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			return len(cs)
		}
		if n := count(store.Filter{Status: store.StatusExpired}); n != 5 {
			t.Errorf("expired = %d, want 5", n)
		}
		if n := count(store.Filter{Status: store.StatusValid}); n != 25 {
			t.Errorf("valid = %d, want 25", n)
		}
		if n := count(store.Filter{ExpiringWithin: 10 * 24 * time.Hour}); n != 5 {
			t.Errorf("expiring within 10 days = %d, want 5 (days 6..10)", n)
		}
		if n := count(store.Filter{Kind: pki.KindDaemon}); n != 15 {
			t.Errorf("daemons = %d, want 15", n)
		}
		byName, err := s.CertificatesByName(ctx, "n1")
		if err != nil || len(byName) != 8 {
			t.Errorf("CertificatesByName(n1) = %d, %v; want 8", len(byName), err)
		}
		if cs, err := s.Resolve(ctx, pki.FormatSerial(big.NewInt(17)), false, now); err != nil || len(cs) != 1 {
			t.Errorf("Resolve(serial 17) = %v, %v", cs, err)
		}
		res, err := s.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Problems {
			if p.Where != "ca" && p.Where != "keys" {
				t.Errorf("check: %s: %s", p.Where, p.Problem)
			}
		}
	})
}

// RunKV checks the kv contract itself on the backend under a store.
func RunKV(t *testing.T, open Opener) {
	ctx := context.Background()
	bucket := []byte("kvtest")
	t.Run("SerializableCounter", func(t *testing.T) {
		b := open(t).Backend()
		const n = 40
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := b.Update(ctx, func(tx kv.Tx) error {
					bk, err := tx.CreateBucketIfNotExists(bucket)
					if err != nil {
						return err
					}
					var v uint64
					if cur := bk.Get([]byte("counter")); len(cur) == 8 {
						v = binary.BigEndian.Uint64(cur)
					}
					var out [8]byte
					binary.BigEndian.PutUint64(out[:], v+1)
					return bk.Put([]byte("counter"), out[:])
				})
				if err != nil {
					t.Errorf("increment: %v", err)
				}
			}()
		}
		wg.Wait()
		_ = b.View(ctx, func(tx kv.Tx) error {
			if got := binary.BigEndian.Uint64(tx.Bucket(bucket).Get([]byte("counter"))); got != n {
				t.Errorf("counter = %d after %d increments: lost updates", got, n)
			}
			return nil
		})
	})
	t.Run("RangeReadsGuarded", func(t *testing.T) {
		// Each writer adds a key only while the bucket holds fewer than
		// 5: a write-skew any non-serializable store would exceed.
		b := open(t).Backend()
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := b.Update(ctx, func(tx kv.Tx) error {
					bk, err := tx.CreateBucketIfNotExists(bucket)
					if err != nil {
						return err
					}
					n := 0
					_ = bk.ForEach(func(_, _ []byte) error { n++; return nil })
					if n >= 5 {
						return nil
					}
					return bk.Put([]byte(fmt.Sprintf("k%02d", i)), []byte("v"))
				})
				if err != nil {
					t.Errorf("update: %v", err)
				}
			}()
		}
		wg.Wait()
		_ = b.View(ctx, func(tx kv.Tx) error {
			n := 0
			_ = tx.Bucket(bucket).ForEach(func(_, _ []byte) error { n++; return nil })
			if n != 5 {
				t.Errorf("bucket holds %d keys, want exactly 5", n)
			}
			return nil
		})
	})
	t.Run("AtomicAndOwnWrites", func(t *testing.T) {
		b := open(t).Backend()
		boom := errors.New("boom")
		err := b.Update(ctx, func(tx kv.Tx) error {
			bk, err := tx.CreateBucketIfNotExists(bucket)
			if err != nil {
				return err
			}
			for i := range 10 {
				if err := bk.Put([]byte{byte('a' + i)}, []byte{byte(i)}); err != nil {
					return err
				}
			}
			// Reads see the transaction's own writes, in order.
			var keys []byte
			c := bk.Cursor()
			for k, _ := c.Seek([]byte("c")); k != nil; k, _ = c.Next() {
				keys = append(keys, k...)
			}
			if string(keys) != "cdefghij" {
				t.Errorf("cursor over own writes = %q", keys)
			}
			if err := bk.Delete([]byte("d")); err != nil {
				return err
			}
			if bk.Get([]byte("d")) != nil {
				t.Error("a deleted key is still read")
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update = %v, want fn's error unchanged", err)
		}
		_ = b.View(ctx, func(tx kv.Tx) error {
			if bk := tx.Bucket(bucket); bk != nil && bk.Get([]byte("a")) != nil {
				t.Error("an aborted transaction left a write behind")
			}
			return nil
		})
		if err := b.Update(ctx, func(tx kv.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucket)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := b.View(ctx, func(tx kv.Tx) error {
			return tx.Bucket(bucket).Put([]byte("x"), []byte("y"))
		}); err == nil {
			t.Error("a write in View succeeded")
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		b := open(t).Backend()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := b.Update(cctx, func(tx kv.Tx) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("Update with a cancelled context = %v", err)
		}
		if err := b.View(cctx, func(tx kv.Tx) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("View with a cancelled context = %v", err)
		}
	})
}
