package store

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store/kv"
)

// fullScan is List without indexes: what every filter must equal.
func fullScan(t *testing.T, s *Store, f Filter) []string {
	t.Helper()
	var out []string
	err := s.view(context.Background(), func(tx kv.Tx) error {
		return tx.Bucket(bucketCerts).ForEach(func(k, _ []byte) error {
			c, err := getCert(tx, k)
			if err != nil {
				return err
			}
			st := c.Status(f.Now)
			if (f.Kind == "" || c.Kind == f.Kind) && (f.Status == "" || st == f.Status) &&
				(f.ExpiringWithin == 0 || st == StatusValid && !c.NotAfter.After(f.Now.Add(f.ExpiringWithin))) {
				out = append(out, c.Serial)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func serialsOf(cs []*Certificate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Serial)
	}
	slices.Sort(out)
	return out
}

// Every status and expiry filter answered from the indexes lists exactly
// what a full scan finds, at the boundaries too (a certificate expiring
// this very second, one just inside and one just outside a window).
func TestIndexedListMatchesFullScan(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Second).Add(300 * time.Millisecond)
	offsets := []time.Duration{-48 * time.Hour, -time.Second, 0, 700 * time.Millisecond, time.Second, 23 * time.Hour,
		24*time.Hour - time.Second, 24 * time.Hour, 24*time.Hour + time.Second, 30 * 24 * time.Hour}
	n := int64(0)
	for _, off := range offsets {
		for _, kind := range []pki.Kind{pki.KindClient, pki.KindDaemon} {
			n++
			c := rec(n, fmt.Sprintf("c%d", n), kind, now.Add(off).Truncate(time.Second))
			if err := s.PutCertificate(ctx, c); err != nil {
				t.Fatal(err)
			}
			if n%3 == 0 {
				if err := s.Revoke(ctx, big.NewInt(n), &Revocation{ReasonCode: 1, RevokedAt: now}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, f := range []Filter{
		{Status: StatusValid}, {Status: StatusExpired}, {Status: StatusRevoked},
		{ExpiringWithin: 24 * time.Hour}, {ExpiringWithin: time.Second}, {ExpiringWithin: 24 * time.Hour, Kind: pki.KindDaemon},
		{Status: StatusValid, Kind: pki.KindClient}, {Status: StatusRevoked, ExpiringWithin: time.Hour}, {},
	} {
		f.Now = now
		got, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if want := fullScan(t, s, f); !slices.Equal(serialsOf(got), want) {
			t.Errorf("%+v: indexed %v, full scan %v", f, serialsOf(got), want)
		}
	}
}

// A database from before the indexes gets them on its first open for
// writing, after a backup copy (the old file, byte for byte usable) is
// written beside it; later opens change nothing.
func TestExistingDatabaseGainsIndexesAfterBackup(t *testing.T) {
	s, p := openTemp(t)
	ctx := context.Background()
	now := time.Now()
	for i := int64(1); i <= 50; i++ {
		if err := s.PutCertificate(ctx, rec(i, fmt.Sprintf("n%d", i%7), pki.KindClient, now.Add(time.Duration(i-25)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	for i := int64(1); i <= 10; i++ {
		if err := s.Revoke(ctx, big.NewInt(i), &Revocation{ReasonCode: 4, RevokedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// Make it look like a database written before the indexes existed.
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketByExpiry, bucketCRLEntries} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Delete(keyRevocationSeq); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(keyIndexes)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Read-only opens do not migrate, and still list correctly.
	ro, err := Open(p, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	old, err := ro.List(ctx, Filter{Status: StatusRevoked})
	if err != nil || len(old) != 10 {
		t.Fatalf("read-only list before migration: %d %v", len(old), err)
	}
	ro.Close()

	s2, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	backup := s2.IndexBackup()
	if backup == "" || filepath.Dir(backup) != filepath.Dir(p) || !strings.HasSuffix(backup, BackupSuffix) {
		t.Fatalf("backup %q", backup)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	for _, f := range []Filter{{Status: StatusRevoked}, {Status: StatusExpired}, {Status: StatusValid}, {ExpiringWithin: 5 * time.Hour}} {
		f.Now = now
		got, err := s2.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if want := fullScan(t, s2, f); !slices.Equal(serialsOf(got), want) || len(want) == 0 {
			t.Errorf("%+v after migration: %v, want %v", f, serialsOf(got), want)
		}
	}
	var entries int
	if _, err := s2.ScanRevoked(ctx, func(e RevokedEntry) error {
		entries++
		if e.ReasonCode != 4 || e.ExpiresAt.IsZero() {
			return fmt.Errorf("entry %x: %+v", e.Serial, e)
		}
		return nil
	}); err != nil || entries != 10 {
		t.Fatalf("CRL entries after migration: %d %v", entries, err)
	}
	s2.Close()

	// The backup is the old database: it opens (and would migrate itself).
	b, err := Open(backup, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if all, err := b.List(ctx, Filter{}); err != nil || len(all) != 50 {
		t.Fatalf("backup holds %d certificates (%v)", len(all), err)
	}
	b.Close()

	s3, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if s3.IndexBackup() != "" {
		t.Fatal("a second open backed up and migrated again")
	}
}

// The CRL header is written beside the CRL and read without the DER; a CRL
// stored before the header existed is still read (from the CRL itself).
func TestCRLHeader(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	if _, err := s.CRLHeader(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no CRL: %v", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	crl := &CRL{Number: 7, ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour), Duration: 24 * time.Hour, DER: []byte{0x30, 0}, RevocationSeq: 3}
	if err := s.PutCRL(ctx, crl); err != nil {
		t.Fatal(err)
	}
	h, err := s.CRLHeader(ctx)
	if err != nil || h.Number != 7 || h.RevocationSeq != 3 || !h.NextUpdate.Equal(crl.NextUpdate) || h.DER != nil {
		t.Fatalf("header: %+v %v", h, err)
	}
	if err := s.PutCRL(ctx, &CRL{Number: 7, DER: []byte{0x30, 0}}); err == nil {
		t.Fatal("a CRL number that does not increase was stored")
	}
	// As a database from before the header would hold it.
	if err := s.kv.Update(context.Background(), func(tx kv.Tx) error { return tx.Bucket(bucketCRL).Delete(keyCRLHeader) }); err != nil {
		t.Fatal(err)
	}
	if h, err := s.CRLHeader(ctx); err != nil || h.Number != 7 || h.RevocationSeq != 3 {
		t.Fatalf("header of an older CRL: %+v %v", h, err)
	}
}
