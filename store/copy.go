package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dockca/dockca/store/kv"
)

// Every bucket a dockca store may hold, in the order a copy writes them
// (meta last: its schema marker is what makes a copy a store).
var copyBuckets = [][]byte{bucketCerts, bucketByName, bucketByExpiry, bucketRevoked, bucketCRLEntries,
	bucketRenewals, bucketTokens, bucketTokenMeta, bucketCRL, bucketSettings, bucketMeta}

// keyCopying marks a store that a copy is being written into: until the
// copy's last transaction removes it (and writes the schema marker), the
// store is not a dockca store, and a rerun of the copy starts over.
var keyCopying = []byte("copy_in_progress")

// ErrNotEmpty refuses a copy into a store that already holds data.
var ErrNotEmpty = errors.New("the destination store is not empty")

// ErrIncompleteCopy means a store holds an interrupted copy.
var ErrIncompleteCopy = errors.New("the store holds an interrupted copy (run dockca store copy again)")

// CopyStats counts what a copy wrote.
type CopyStats struct {
	Keys         int // every key of every bucket
	Certificates int
	Revocations  int
	Tokens       int
}

// CopyTo copies the whole store, from one consistent snapshot, into dst,
// which must be empty or hold an interrupted copy (which is cleared
// first). dst becomes a store only when the last key is written: the
// schema marker goes in the final transaction, so a copy killed midway
// leaves dst refused as an interrupted copy, and a rerun works. The
// source is only read.
func (s *Store) CopyTo(ctx context.Context, dst *Store) (*CopyStats, error) {
	if err := dst.prepareCopy(ctx); err != nil {
		return nil, err
	}
	limit := 1 << 30
	if l, ok := dst.kv.(kv.Limited); ok {
		limit = l.MaxWrites()
	}
	st := &CopyStats{}
	type pair struct{ bucket, k, v []byte }
	var pending []pair
	flush := func(final bool) error {
		err := dst.kv.Update(ctx, func(tx kv.Tx) error {
			for _, p := range pending {
				b, err := tx.CreateBucketIfNotExists(p.bucket)
				if err != nil {
					return err
				}
				if err := b.Put(p.k, p.v); err != nil {
					return err
				}
			}
			if final {
				meta, err := tx.CreateBucketIfNotExists(bucketMeta)
				if err != nil {
					return err
				}
				return meta.Delete(keyCopying)
			}
			return nil
		})
		pending = pending[:0]
		return err
	}
	err := s.view(ctx, func(tx kv.Tx) error {
		var schema []byte
		for _, name := range copyBuckets {
			b := tx.Bucket(name)
			if b == nil {
				continue
			}
			err := b.ForEach(func(k, v []byte) error {
				if bytes.Equal(name, bucketMeta) && (bytes.Equal(k, keySchema) || bytes.Equal(k, keyCopying)) {
					if bytes.Equal(k, keySchema) {
						schema = bytes.Clone(v)
					}
					return nil
				}
				st.Keys++
				switch {
				case bytes.Equal(name, bucketCerts):
					st.Certificates++
				case bytes.Equal(name, bucketRevoked):
					st.Revocations++
				case bytes.Equal(name, bucketTokenMeta) && bytes.HasPrefix(k, tokenPrefix):
					st.Tokens++
				}
				pending = append(pending, pair{name, bytes.Clone(k), bytes.Clone(v)})
				if len(pending) >= limit-1 {
					return flush(false)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if schema == nil {
			return ErrNoCA
		}
		pending = append(pending, pair{bucketMeta, keySchema, schema})
		if len(pending) >= limit-1 {
			last := pending[len(pending)-1]
			pending = pending[:len(pending)-1]
			if err := flush(false); err != nil {
				return err
			}
			pending = append(pending, last)
		}
		return flush(true)
	})
	if err != nil {
		return nil, fmt.Errorf("copy %s to %s: %w", s.path, dst.path, err)
	}
	return st, nil
}

// prepareCopy checks that the store can receive a copy, clears an
// interrupted one, and marks it as being copied into.
func (s *Store) prepareCopy(ctx context.Context) error {
	var partial bool
	err := s.kv.View(ctx, func(tx kv.Tx) error {
		if tx.Empty() {
			return nil
		}
		if meta := tx.Bucket(bucketMeta); meta != nil && meta.Get(keyCopying) != nil {
			partial = true
			return nil
		}
		return ErrNotEmpty
	})
	if err != nil {
		return fmt.Errorf("copy into %s: %w", s.path, err)
	}
	if partial {
		for _, name := range copyBuckets {
			if bytes.Equal(name, bucketMeta) {
				continue
			}
			if err := s.kv.Update(ctx, func(tx kv.Tx) error {
				if tx.Bucket(name) == nil {
					return nil
				}
				return tx.DeleteBucket(name)
			}); err != nil {
				return fmt.Errorf("clear the interrupted copy in %s: %w", s.path, err)
			}
		}
	}
	return s.kv.Update(ctx, func(tx kv.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		var stale [][]byte
		if err := meta.ForEach(func(k, _ []byte) error {
			stale = append(stale, bytes.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range stale {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		return meta.Put(keyCopying, []byte("1"))
	})
}

// backupToBolt is Backup for a store that is not a bbolt file: the
// snapshot is copied into a temporary bbolt file, which is then streamed.
func (s *Store) backupToBolt(ctx context.Context, start func(size int64) (io.Writer, error)) (int64, error) {
	dir, err := os.MkdirTemp("", "dockca-backup-")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(dir)
	path := dir + "/" + FileName
	dst, err := openForCopy(path)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer dst.Close()
	if _, err := s.CopyTo(ctx, dst); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	return dst.bolt.snapshot(ctx, start)
}
