package store

import (
	"context"
	"errors"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/dockca/dockca/store/kv"
)

// TestInterruptedCopyIsRefusedAndRedone: a copy killed after its first
// transactions leaves a store that no command takes for a CA, and a rerun
// clears it and completes.
func TestInterruptedCopyIsRefusedAndRedone(t *testing.T) {
	ctx := context.Background()
	src, _ := openTemp(t)
	if err := src.InitCA(ctx, &CA{Name: "copy"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "half.db")
	dst, err := OpenForCopy(ctx, Config{URL: "bolt:" + path})
	if err != nil {
		t.Fatal(err)
	}
	// What a copy killed after its first chunk leaves: the marker and
	// some records, no schema.
	id, err := dst.prepareCopy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.kv.Update(ctx, func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketCerts)
		if err != nil {
			return err
		}
		return b.Put([]byte{1}, []byte("{}"))
	}); err != nil {
		t.Fatal(err)
	}
	// While that copy could still be running, a second one is refused.
	if _, err := src.CopyTo(ctx, dst); !errors.Is(err, ErrCopyInProgress) {
		t.Fatalf("a copy into a store another copy is writing = %v, want ErrCopyInProgress", err)
	}
	// Its mark goes stale: it was killed.
	if err := dst.kv.Update(ctx, func(tx kv.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyCopying, copyMark(id, time.Now().Add(-2*copyStaleAfter)))
	}); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	if _, err := Open(path, nil); !errors.Is(err, ErrIncompleteCopy) {
		t.Fatalf("opening a half copy = %v, want ErrIncompleteCopy", err)
	}
	dst, err = OpenForCopy(ctx, Config{URL: "bolt:" + path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.CopyTo(ctx, dst); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ca, err := s.CA(ctx); err != nil || ca.Name != "copy" {
		t.Fatalf("CA after the rerun = %v, %v", ca, err)
	}
	if _, err := s.Certificate(ctx, bigOne()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the half copy's record survived the rerun: %v", err)
	}
}

func bigOne() *big.Int { return big.NewInt(1) }
