package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store/kv"
)

// TestListScales times `ls --expiring-within 1d`, `ls --status revoked`
// and `ls --status expired` (store.List, as the CLI calls it) on 10,000
// and on 1,000,000 records holding the same 100 matches of each, and
// requires the larger to take at most 10 times as long. It is a load test,
// not part of the default run:
//
//	DOCKCA_LS_BENCH=1 go test -tags nobadger,nomysql,nopgx -count=1 -run TestListScales -v -timeout 30m ./store/
func TestListScales(t *testing.T) {
	if os.Getenv("DOCKCA_LS_BENCH") == "" {
		t.Skip("set DOCKCA_LS_BENCH=1 to run the ls scaling test")
	}
	filters := map[string]Filter{
		"--expiring-within 1d": {ExpiringWithin: 24 * time.Hour},
		"--status revoked":     {Status: StatusRevoked},
		"--status expired":     {Status: StatusExpired},
	}
	took := map[int]map[string]time.Duration{}
	for _, size := range []int{10000, 1000000} {
		s := bulkStore(t, size)
		took[size] = map[string]time.Duration{}
		for name, f := range filters {
			best := time.Duration(1 << 62)
			for range 5 {
				t0 := time.Now()
				got, err := s.List(context.Background(), f)
				if err != nil {
					t.Fatal(err)
				}
				best = min(best, time.Since(t0))
				if len(got) != 100 {
					t.Fatalf("%s on %d records: %d matches, want 100", name, size, len(got))
				}
			}
			took[size][name] = best
		}
		s.Close()
	}
	for name := range filters {
		small, large := took[10000][name], took[1000000][name]
		ratio := float64(large) / float64(small)
		t.Logf("ls %-22s 10,000 records: %8s  1,000,000 records: %8s  ratio %.1f", name, small.Round(10*time.Microsecond), large.Round(10*time.Microsecond), ratio)
		if ratio > 10 {
			t.Errorf("ls %s: %.1fx slower on 100x the records (want at most 10x)", name, ratio)
		}
	}
}

// bulkStore writes size certificate records (random serials, a 400-byte
// DER, expiring in 2 to 365 days) of which 100 expire within a day, 100
// have expired and 100 are revoked, through the same index code as
// PutCertificate, in large unsynced transactions.
func bulkStore(t *testing.T, size int) *Store {
	t.Helper()
	p := filepath.Join(t.TempDir(), FileName)
	s, err := Open(p, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	der := make([]byte, 400)
	const perTx = 20000
	for start := 0; start < size; start += perTx {
		err := s.kv.Update(context.Background(), func(tx kv.Tx) error {
			for i := start; i < min(size, start+perTx); i++ {
				b := make([]byte, 20)
				rand.Read(b)
				b[0] &= 0x7f
				sn := new(big.Int).SetBytes(b)
				notAfter := now.Add(48*time.Hour + time.Duration(i%363)*24*time.Hour)
				switch {
				case i < 100:
					notAfter = now.Add(time.Duration(i+1) * 10 * time.Minute)
				case i < 200:
					notAfter = now.Add(-time.Duration(i) * time.Hour)
				}
				c := &Certificate{Serial: pki.FormatSerial(sn), Name: fmt.Sprintf("bulk%07d", i), Kind: pki.KindClient, Role: "admin",
					NotBefore: now.Add(-time.Hour), NotAfter: notAfter, IssuedAt: now, DER: der}
				if err := putRecord(tx, c); err != nil {
					return err
				}
				if i >= 200 && i < 300 {
					r := &Revocation{Serial: c.Serial, ReasonCode: 4, RevokedAt: now, ExpiresAt: notAfter}
					if err := putRevocation(tx, serialKey(sn), r); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if s, err = Open(p, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// putRecord and putRevocation write what PutCertificate and Revoke write,
// without their checks, for bulk set-up.
func putRecord(tx kv.Tx, c *Certificate) error {
	key, err := serialKeyFromHex(c.Serial)
	if err != nil {
		return err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketCerts).Put(key, b); err != nil {
		return err
	}
	return putIndexes(tx, key, c)
}

func putRevocation(tx kv.Tx, key []byte, r *Revocation) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketRevoked).Put(key, b); err != nil {
		return err
	}
	return putRevocationIndexes(tx, key, r)
}
