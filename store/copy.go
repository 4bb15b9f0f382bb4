package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

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
	id, err := dst.prepareCopy(ctx)
	if err != nil {
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
			if err := checkCopyMark(tx, id); err != nil {
				return err
			}
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
	err = s.view(ctx, func(tx kv.Tx) error {
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

// ErrCopyRaced means another copy took over the destination midway.
var ErrCopyRaced = errors.New("another copy into the destination started meanwhile")

// ErrCopyInProgress means another copy is being written into the
// destination now (its mark was refreshed within copyStaleAfter).
var ErrCopyInProgress = errors.New("another copy into the destination is in progress")

// copyStaleAfter is how long a copy's mark may go unrefreshed before a new
// copy takes it for an interrupted one: every transaction of a copy
// refreshes it, so a live copy is never taken over.
const copyStaleAfter = time.Minute

// copyMark is the mark's value: the copy's ID and when it last wrote.
func copyMark(id []byte, now time.Time) []byte {
	v := make([]byte, len(id)+8)
	copy(v, id)
	binary.BigEndian.PutUint64(v[len(id):], uint64(now.Unix()))
	return v
}

// copyMarkAge is how long ago the copy that set v last wrote.
func copyMarkAge(v []byte, now time.Time) time.Duration {
	if len(v) < 8 {
		return copyStaleAfter // a mark without a time: treat as stale
	}
	return now.Sub(time.Unix(int64(binary.BigEndian.Uint64(v[len(v)-8:])), 0))
}

// prepareCopy checks, in one transaction, that the store can receive a
// copy (empty, or holding an interrupted copy, which it clears) and marks
// it with a new copy ID. Two copies started at once into one store cannot
// both pass: the loser finds the store no longer empty. Every later
// transaction of the copy checks that the mark is still its own.
func (s *Store) prepareCopy(ctx context.Context) ([]byte, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	marked := false
	err := s.kv.Update(ctx, func(tx kv.Tx) error {
		marked = false
		if !tx.Empty() {
			meta := tx.Bucket(bucketMeta)
			if meta == nil || meta.Get(keyCopying) == nil {
				return ErrNotEmpty
			}
			if copyMarkAge(meta.Get(keyCopying), time.Now()) < copyStaleAfter {
				return ErrCopyInProgress
			}
			for _, name := range copyBuckets {
				if tx.Bucket(name) != nil {
					if err := tx.DeleteBucket(name); err != nil {
						return err
					}
				}
			}
			if _, isBolt := tx.(boltTx); !isBolt {
				// etcd cannot delete and write a bucket in one
				// transaction: commit the clearing, mark next.
				return nil
			}
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		marked = true
		return meta.Put(keyCopying, copyMark(id, time.Now()))
	})
	if err == nil && !marked {
		err = s.kv.Update(ctx, func(tx kv.Tx) error {
			if !tx.Empty() {
				return ErrNotEmpty
			}
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			return meta.Put(keyCopying, copyMark(id, time.Now()))
		})
	}
	if err != nil {
		return nil, fmt.Errorf("copy into %s: %w", s.path, err)
	}
	return id, nil
}

// checkCopyMark fails a copy's transaction when the mark is not its own,
// and refreshes it.
func checkCopyMark(tx kv.Tx, id []byte) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil || !bytes.HasPrefix(meta.Get(keyCopying), id) {
		return ErrCopyRaced
	}
	if err := meta.Put(keyCopying, copyMark(id, time.Now())); err != nil {
		return err
	}
	return nil
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

// CopyReport is what Copy copied and verified.
type CopyReport struct {
	From, To  string
	Copied    CopyStats
	CRLNumber int64 // 0 when the CA has no CRL yet
}

// Copy copies the whole CA stored at from into to (empty, or holding an
// interrupted copy) and verifies the result: the destination, opened as
// any command opens it, holds as many certificates, revocations and
// tokens as the source's snapshot, and the same CRL, byte for byte. The
// source is opened read-only and never changed.
func Copy(ctx context.Context, from, to Config) (*CopyReport, error) {
	lf, err := from.Location()
	if err != nil {
		return nil, err
	}
	lt, err := to.Location()
	if err != nil {
		return nil, err
	}
	if lf.String() == lt.String() {
		return nil, fmt.Errorf("copy: --from and --to are the same store (%s)", lf)
	}
	src, err := OpenConfig(ctx, from, &Options{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("copy: open the source: %w", err)
	}
	defer src.Close()
	dst, err := OpenForCopy(ctx, to)
	if err != nil {
		return nil, fmt.Errorf("copy: open the destination: %w", err)
	}
	st, err := src.CopyTo(ctx, dst)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	rep := &CopyReport{From: lf.String(), To: lt.String(), Copied: *st}
	got, err := OpenConfig(ctx, to, &Options{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("copy: verify: %w", err)
	}
	defer got.Close()
	var have CopyStats
	if err := got.view(ctx, func(tx kv.Tx) error {
		count := func(name []byte, keep func(k []byte) bool) int {
			n := 0
			if b := tx.Bucket(name); b != nil {
				_ = b.ForEach(func(k, _ []byte) error {
					if keep == nil || keep(k) {
						n++
					}
					return nil
				})
			}
			return n
		}
		have.Certificates = count(bucketCerts, nil)
		have.Revocations = count(bucketRevoked, nil)
		have.Tokens = count(bucketTokenMeta, func(k []byte) bool { return bytes.HasPrefix(k, tokenPrefix) })
		return nil
	}); err != nil {
		return nil, fmt.Errorf("copy: verify: %w", err)
	}
	if have.Certificates != st.Certificates || have.Revocations != st.Revocations || have.Tokens != st.Tokens {
		return nil, fmt.Errorf("copy: verify: the destination holds %d certificates, %d revocations and %d tokens; the source %d, %d and %d",
			have.Certificates, have.Revocations, have.Tokens, st.Certificates, st.Revocations, st.Tokens)
	}
	want, werr := src.CRL(ctx)
	have2, herr := got.CRL(ctx)
	switch {
	case errors.Is(werr, ErrNotFound) && errors.Is(herr, ErrNotFound):
	case werr != nil:
		return nil, fmt.Errorf("copy: verify: %w", werr)
	case herr != nil:
		return nil, fmt.Errorf("copy: verify: %w", herr)
	case want.Number != have2.Number || !bytes.Equal(want.DER, have2.DER):
		// The source changed after the snapshot (a running service
		// made a new CRL): the copy is of the snapshot, not of now.
		return nil, fmt.Errorf("copy: verify: the CRLs differ (number %d against %d); was the source in use? stop dockca serve and copy again", want.Number, have2.Number)
	default:
		rep.CRLNumber = want.Number
	}
	return rep, nil
}
