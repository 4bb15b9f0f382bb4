package store

import (
	"context"
	"io"

	bolt "go.etcd.io/bbolt"

	"github.com/dockca/dockca/store/kv"
)

// boltBackend is the kv contract on one bbolt file: bbolt transactions are
// serializable (one writer at a time), so Update runs fn exactly once;
// Batch shares a commit among concurrent writers (groupCommit). A bbolt
// panic or a fault on the memory map (damaged pages) becomes a
// DamagedError: no command may crash on a damaged database.
type boltBackend struct {
	db    *bolt.DB
	path  string
	group *kv.GroupCommit
}

func newBoltBackend(db *bolt.DB, path string) *boltBackend {
	b := &boltBackend{db: db, path: path}
	b.group = &kv.GroupCommit{Update: func(fn func(kv.Tx) error) error {
		return db.Update(func(tx *bolt.Tx) (err error) {
			defer faultsPanic()()
			defer guard(path, &err)
			return fn(boltTx{tx})
		})
	}}
	return b
}

func (b *boltBackend) Location() string { return b.path }

func (b *boltBackend) Close() error { return b.db.Close() }

func (b *boltBackend) View(ctx context.Context, fn func(kv.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer faultsPanic()()
	defer guard(b.path, &err)
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *boltBackend) Update(ctx context.Context, fn func(kv.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer faultsPanic()()
	defer guard(b.path, &err)
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *boltBackend) Batch(ctx context.Context, fn func(kv.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer faultsPanic()()
	defer guard(b.path, &err)
	return b.group.Do(fn)
}

// snapshot writes a consistent copy of the file (Tx.WriteTo in a read
// transaction); start learns the size first.
func (b *boltBackend) snapshot(ctx context.Context, start func(size int64) (io.Writer, error)) (n int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	defer faultsPanic()()
	defer guard(b.path, &err)
	err = b.db.View(func(tx *bolt.Tx) error {
		w, err := start(tx.Size())
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Bucket(name []byte) kv.Bucket {
	if b := t.tx.Bucket(name); b != nil {
		return boltBucket{b}
	}
	return nil
}

func (t boltTx) CreateBucketIfNotExists(name []byte) (kv.Bucket, error) {
	if !t.tx.Writable() {
		return nil, kv.ErrReadOnly
	}
	b, err := t.tx.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, err
	}
	return boltBucket{b}, nil
}

func (t boltTx) DeleteBucket(name []byte) error { return t.tx.DeleteBucket(name) }

func (t boltTx) Empty() bool {
	found := false
	_ = t.tx.ForEach(func([]byte, *bolt.Bucket) error { found = true; return nil })
	return !found
}

func (t boltTx) Writable() bool { return t.tx.Writable() }

type boltBucket struct{ *bolt.Bucket }

func (b boltBucket) Cursor() kv.Cursor { return b.Bucket.Cursor() }

// check runs bbolt's page consistency check.
func (b *boltBackend) check(ctx context.Context) (errs []error) {
	err := b.View(ctx, func(t kv.Tx) error {
		for err := range t.(boltTx).tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errs
}
