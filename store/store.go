// Package store keeps everything dockca persists in one bbolt file,
// <home>/dockca.db: the CA's certificates and encrypted keys, every issued
// certificate with dockca's own record of it (kind, name, role, SANs,
// validity, who issued it and when), revocations, used one-time token IDs
// and the current CRL.
//
// The contract, in the spirit of certmagic's Storage:
//   - A *Store is safe for concurrent use by multiple goroutines.
//   - Every method that changes state does so in exactly one bbolt
//     transaction, so a crash at any point leaves either the old state or
//     the new one, never a mix.
//   - Methods honour context cancellation before they start a transaction;
//     a transaction that has started runs to completion (bbolt transactions
//     cannot be interrupted, and they are short).
//   - Lookups of things that do not exist return errors that match
//     ErrNotFound (or a more specific sentinel such as ErrNoCA) with
//     errors.Is, so callers can branch without string matching.
//
// bbolt holds an exclusive lock on the file while it is open for writing,
// so the store is the only component that opens it: the embedded
// smallstep authority gets its persistence through AuthDB, which works on
// the same handle.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the database file inside a dockca home.
const FileName = "dockca.db"

var (
	// ErrNotFound is matched by every "no such thing" error of this package.
	ErrNotFound = errors.New("not found")
	// ErrNoCA means the database holds no certificate authority yet.
	ErrNoCA = fmt.Errorf("no certificate authority has been initialised (run dockca init): %w", ErrNotFound)
	// ErrCAExists means an authority is already stored.
	ErrCAExists = errors.New("a certificate authority already exists")
	// ErrLocked means another process holds the database open.
	ErrLocked = errors.New("the database is locked by another dockca process")
	// ErrCorrupt means the file is not a dockca database or is damaged.
	ErrCorrupt = errors.New("the database file is corrupt or not a dockca database")
	// ErrAlreadyRevoked is returned when revoking a revoked certificate.
	ErrAlreadyRevoked = errors.New("certificate is already revoked")
	// ErrRenewedFromRevoked refuses a renewal whose source certificate was
	// revoked while the renewal was being signed.
	ErrRenewedFromRevoked = errors.New("the certificate presented for renewal has been revoked")
	// ErrTokenUsed is returned when a one-time token ID was seen before.
	ErrTokenUsed = errors.New("token has already been used")
)

var (
	bucketMeta     = []byte("meta")
	bucketCerts    = []byte("certs")
	bucketByName   = []byte("certs_by_name")
	bucketRevoked  = []byte("revoked")
	bucketTokens   = []byte("used_tokens")
	bucketCRL      = []byte("crl")
	bucketSettings = []byte("settings")
	bucketRenewals = []byte("renewals") // renewed-from serial, 0, renewal serial
	allBuckets     = [][]byte{bucketMeta, bucketCerts, bucketByName, bucketRevoked, bucketTokens, bucketCRL, bucketSettings, bucketRenewals}

	keySchema = []byte("schema")
	schemaV1  = []byte("dockca/1")
)

// Options tune Open.
type Options struct {
	// ReadOnly opens the file with a shared lock: several readers may
	// coexist, writers wait.
	ReadOnly bool
	// LockTimeout bounds the wait for another process's lock; zero means
	// two seconds. dockca never waits forever.
	LockTimeout time.Duration
	// NoSync skips fsync; only for benchmarks that measure everything else.
	NoSync bool
}

// Store is the dockca database.
type Store struct {
	db          *bolt.DB
	path        string
	group       groupCommit
	indexBackup string // see IndexBackup
}

// Path returns the database path inside home.
func Path(home string) string { return filepath.Join(home, FileName) }

// Exists reports whether home already holds a database file.
func Exists(home string) bool {
	_, err := os.Stat(Path(home))
	return err == nil
}

// Open opens (creating if needed, unless read-only) the database at path.
// The file is created 0600.
func Open(path string, o *Options) (*Store, error) {
	if o == nil {
		o = &Options{}
	}
	timeout := o.LockTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if o.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("open %s: %w", path, ErrNoCA)
			}
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: o.ReadOnly, NoSync: o.NoSync})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, classifyOpenError(err))
	}
	s := &Store{db: db, path: path}
	if err := s.prepare(o.ReadOnly); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !o.ReadOnly {
		if err := s.ensureIndexes(); err != nil {
			db.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	return s, nil
}

func classifyOpenError(err error) error {
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return ErrLocked
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrInvalidMapping):
		return ErrCorrupt
	}
	return err
}

// prepare creates the buckets of a new file and checks the schema marker of
// an existing one, so that a foreign bbolt file is refused rather than
// silently extended.
func (s *Store) prepare(readOnly bool) (err error) {
	defer func() {
		// bbolt panics on some kinds of page corruption; turn that into
		// the typed error instead of a crash.
		if r := recover(); r != nil {
			err = ErrCorrupt
		}
	}()
	if readOnly {
		return s.db.View(func(tx *bolt.Tx) error { return checkSchema(tx) })
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil && hasAnyBucket(tx) {
			return ErrCorrupt
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySchema); v == nil {
			return meta.Put(keySchema, schemaV1)
		}
		return checkSchema(tx)
	})
}

func hasAnyBucket(tx *bolt.Tx) bool {
	found := false
	_ = tx.ForEach(func([]byte, *bolt.Bucket) error { found = true; return nil })
	return found
}

func checkSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if hasAnyBucket(tx) {
			return ErrCorrupt
		}
		return ErrNoCA
	}
	if v := meta.Get(keySchema); string(v) != string(schemaV1) {
		return ErrCorrupt
	}
	return nil
}

// Close releases the file lock. Closing twice is harmless.
func (s *Store) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	return s.db.Close()
}

// Backup writes a consistent copy of the whole database to w while other
// transactions continue (bbolt's Tx.WriteTo in a read transaction).
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// batch is update for writes that many goroutines make at once: writers
// arriving together share one transaction and one fsync (see groupCommit).
// fn may run more than once and must be idempotent.
func (s *Store) batch(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.group.do(s.db, fn)
}
