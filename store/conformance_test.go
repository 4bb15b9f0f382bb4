package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/etcdtest"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
	"github.com/dockca/dockca/store/storetest"
)

func boltOpener(t testing.TB) *store.Store {
	s, err := store.Open(filepath.Join(t.TempDir(), store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformanceBolt(t *testing.T) {
	storetest.Run(t, boltOpener)
	storetest.RunKV(t, boltOpener)
}

// TestConformanceEtcd runs the same suite on a real 3-member etcd
// cluster, each subtest under its own prefix.
func TestConformanceEtcd(t *testing.T) {
	cluster := etcdtest.Start(t, nil)
	var n atomic.Int32
	open := func(t testing.TB) *store.Store {
		url := cluster.URL(fmt.Sprintf("conformance/%d", n.Add(1)))
		s, err := store.OpenConfig(context.Background(), store.Config{URL: url}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	storetest.Run(t, open)
	storetest.RunKV(t, open)
}

// TestCopyBetweenBackends copies a store from bbolt to etcd and back: the
// same records, revocations, tokens and CRL, and the source unchanged.
func TestCopyBetweenBackends(t *testing.T) {
	ctx := context.Background()
	cluster := etcdtest.Start(t, nil)
	src := boltOpener(t)
	if err := src.InitCA(ctx, &store.CA{Name: "copy", RootDER: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := int64(1); i <= 250; i++ { // more than one etcd transaction
		c := &store.Certificate{Serial: pki.FormatSerial(big.NewInt(i)), Name: fmt.Sprintf("n%d", i%7), Kind: pki.KindClient,
			NotBefore: now, NotAfter: now.Add(time.Hour), IssuedAt: now, DER: []byte{byte(i)}}
		if err := src.PutCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := src.Revoke(ctx, big.NewInt(i), &store.Revocation{ReasonCode: 1, RevokedAt: now}); err != nil {
				t.Fatal(err)
			}
		}
	}
	crl := make([]byte, 2<<20)
	if err := src.PutCRL(ctx, &store.CRL{Number: 3, DER: crl, RevocationSeq: 25}); err != nil {
		t.Fatal(err)
	}
	before, _ := src.Check(ctx)

	etcdURL := cluster.URL("copied")
	dst, err := store.OpenForCopy(ctx, store.Config{URL: etcdURL})
	if err != nil {
		t.Fatal(err)
	}
	st, err := src.CopyTo(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	dst.Close()
	if st.Certificates != 250 || st.Revocations != 25 {
		t.Fatalf("copied %+v", st)
	}
	// A second copy into the now complete store is refused.
	again, err := store.OpenForCopy(ctx, store.Config{URL: etcdURL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.CopyTo(ctx, again); !errors.Is(err, store.ErrNotEmpty) {
		t.Fatalf("copy into a full store = %v, want ErrNotEmpty", err)
	}
	again.Close()

	onEtcd, err := store.OpenConfig(ctx, store.Config{URL: etcdURL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer onEtcd.Close()
	back := filepath.Join(t.TempDir(), "back.db")
	dst2, err := store.OpenForCopy(ctx, store.Config{URL: "bolt:" + back})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onEtcd.CopyTo(ctx, dst2); err != nil {
		t.Fatal(err)
	}
	dst2.Close()
	final, err := store.Open(back, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer final.Close()
	for _, s := range []*store.Store{onEtcd, final} {
		res, err := s.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Certificates) != len(before.Certificates) || res.Revocations != before.Revocations {
			t.Fatalf("%s: %d certificates, %d revocations; want %d, %d", s.Location(), len(res.Certificates), res.Revocations, len(before.Certificates), before.Revocations)
		}
		got, err := s.CRL(ctx)
		if err != nil || got.Number != 3 || !bytes.Equal(got.DER, crl) {
			t.Fatalf("%s: CRL %v (%v)", s.Location(), got, err)
		}
		if h, _ := s.CRLHeader(ctx); h.RevocationSeq != 25 {
			t.Fatalf("%s: CRL header %+v", s.Location(), h)
		}
	}
}
