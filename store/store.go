// Package store keeps everything dockca persists: the CA's certificates
// and encrypted keys, every issued certificate with dockca's own record of
// it (kind, name, role, SANs, validity, who issued it and when),
// revocations, tokens and their spending, the policy and the current CRL.
// Its records and their rules are written once against the transactional
// key-value contract of package store/kv, on one of two backends: a bbolt
// file, <home>/dockca.db (the default), or a key prefix in an etcd cluster
// shared by several dockca serve replicas (store/etcdkv). OpenConfig opens
// either from a URL (bolt:PATH, etcd://HOST:PORT,.../PREFIX).
//
// The contract, in the spirit of certmagic's Storage (package storetest
// checks every clause, on both backends, under concurrency):
//   - A *Store is safe for concurrent use by many goroutines, and on etcd
//     by many processes on many hosts.
//   - Every method that changes state does so in exactly one transaction
//     (serializable on both backends), so a crash at any point leaves
//     either the old state or the new one, never a mix. In particular: a
//     token is spent in the transaction that stores the certificate it
//     buys, so it buys at most one; a renewal is refused in its
//     transaction if its source has been revoked; a serial is stored at
//     most once; CRL numbers strictly increase (ErrCRLNumber otherwise);
//     a revocation is recorded once (ErrAlreadyRevoked) and counted once.
//     The exceptions are bulk operations larger than etcd takes in one
//     transaction, each documented where it is (PutTokens, CopyTo).
//   - Reads see every change acknowledged before they started, on any
//     replica, except where the context is marked StaleOK.
//   - Methods honour context cancellation before they start a transaction
//     (etcd: also while waiting for the cluster); a transaction that has
//     started runs to completion. A change whose commit was not confirmed
//     returns an error matching kv.ErrUncertain; an unreachable store,
//     kv.ErrUnavailable.
//   - Lookups of things that do not exist return errors that match
//     ErrNotFound (or a more specific sentinel such as ErrNoCA) with
//     errors.Is, so callers can branch without string matching.
//
// bbolt holds an exclusive lock on the file while it is open for writing,
// so on bbolt the store is the only component that opens it: the embedded
// smallstep authority gets its persistence through AuthDB, which works on
// the same handle.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/dockca/dockca/store/kv"
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

	forCopy bool // OpenForCopy: an empty or half-copied store
}

// Store is the dockca database, on any kv backend.
type Store struct {
	kv          kv.Backend
	bolt        *boltBackend // nil unless the backend is a bbolt file
	path        string       // where the store is, for messages
	indexBackup string       // see IndexBackup
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
	if err := precheckFile(path); err != nil {
		return nil, err
	}
	db, err := openBolt(path, &bolt.Options{Timeout: timeout, ReadOnly: o.ReadOnly, NoSync: o.NoSync})
	if err != nil {
		var de *DamagedError
		if errors.As(err, &de) {
			return nil, err
		}
		return nil, fmt.Errorf("open %s: %w", path, classifyOpenError(path, err))
	}
	bb := newBoltBackend(db, path)
	s := &Store{kv: bb, bolt: bb, path: path}
	if err := s.prepare(o.ReadOnly); err != nil {
		db.Close()
		var de *DamagedError
		if errors.As(err, &de) {
			return nil, err
		}
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

// openBolt is bolt.Open with its panics (a damaged freelist page) and
// faults turned into a DamagedError.
func openBolt(path string, o *bolt.Options) (db *bolt.DB, err error) {
	defer faultsPanic()()
	defer guard(path, &err)
	return bolt.Open(path, 0o600, o)
}

func classifyOpenError(path string, err error) error {
	var pe *fs.PathError
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return ErrLocked
	case errors.As(err, &pe):
		return err
	}
	// Everything else bbolt refuses on open is about the file's content:
	// a bad magic, version or checksum, a page size it cannot use.
	return damaged(path, "%v", err)
}

// prepare creates the buckets of a new file and checks the schema marker of
// an existing one, so that a foreign bbolt file is refused rather than
// silently extended.
func (s *Store) prepare(readOnly bool) (err error) {
	defer func() {
		if errors.Is(err, ErrCorrupt) {
			var de *DamagedError
			if !errors.As(err, &de) {
				err = damaged(s.path, "it is not a dockca database")
			}
		}
	}()
	if readOnly {
		return s.view(context.Background(), func(tx kv.Tx) error { return checkSchema(tx) })
	}
	// An intact database is only read: opening it for writing must not
	// write (a damaged or foreign file is then left exactly as it was).
	complete := false
	if err := s.view(context.Background(), func(tx kv.Tx) error {
		if err := checkSchema(tx); err != nil {
			if errors.Is(err, ErrNoCA) {
				return nil
			}
			return err
		}
		complete = true
		for _, b := range allBuckets {
			complete = complete && tx.Bucket(b) != nil
		}
		return nil
	}); err != nil || complete {
		return err
	}
	return s.update(context.Background(), func(tx kv.Tx) error {
		fresh := false
		if err := checkSchema(tx); errors.Is(err, ErrNoCA) {
			fresh = true
		} else if err != nil {
			return err
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if fresh {
			return tx.Bucket(bucketMeta).Put(keySchema, schemaV1)
		}
		return nil
	})
}

// checkSchema refuses a store that is not a dockca store: ErrNoCA when it
// is empty, ErrIncompleteCopy for an interrupted copy, ErrCorrupt for
// anything else without dockca's schema marker.
func checkSchema(tx kv.Tx) error {
	meta := tx.Bucket(bucketMeta)
	var v []byte
	if meta != nil {
		v = meta.Get(keySchema)
	}
	switch {
	case v == nil && meta != nil && meta.Get(keyCopying) != nil:
		return ErrIncompleteCopy
	case v == nil && tx.Empty():
		return ErrNoCA
	case string(v) != string(schemaV1):
		return ErrCorrupt
	}
	return nil
}

// Close releases the store (the file lock, or the etcd connection).
// Closing twice is harmless.
func (s *Store) Close() error {
	if s == nil || s.kv == nil {
		return nil
	}
	err := s.kv.Close()
	s.kv = nil
	return err
}

// Location names the store in messages: the database file, or the etcd
// URL without credentials.
func (s *Store) Location() string { return s.path }

// Backup writes a consistent copy of the whole database to w while other
// transactions continue (bbolt's Tx.WriteTo in a read transaction; on
// etcd, a bbolt file made from one snapshot of the store).
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return s.BackupSized(ctx, func(int64) (io.Writer, error) { return w, nil })
}

// BackupSized is Backup for a writer that must know the size first (an
// HTTP response's Content-Length): start is called with the size of the
// copy and returns where to write it.
func (s *Store) BackupSized(ctx context.Context, start func(size int64) (io.Writer, error)) (int64, error) {
	if s.bolt != nil {
		return s.bolt.snapshot(ctx, start)
	}
	return s.backupToBolt(ctx, start)
}

// view, update and batch run fn in a transaction of the backend. A record
// found damaged inside fn is reported with the store's location.
func (s *Store) view(ctx context.Context, fn func(kv.Tx) error) error {
	if sv, ok := s.kv.(kv.StaleViewer); ok && ctx.Value(staleOK{}) != nil {
		return s.located(sv.ViewStale(ctx, fn))
	}
	return s.located(s.kv.View(ctx, fn))
}

type staleOK struct{}

// StaleOK marks ctx for reads that may come from a snapshot slightly
// behind the latest (on etcd, the nearest member's, without a round of
// consensus): hints and prechecks whose decision a later transaction
// confirms, and reads whose lag of milliseconds is harmless. bbolt always
// reads the latest.
func StaleOK(ctx context.Context) context.Context { return context.WithValue(ctx, staleOK{}, true) }

// update runs fn as one serializable transaction. fn may run more than
// once (the etcd backend retries on conflict) and must act only through
// tx.
func (s *Store) update(ctx context.Context, fn func(kv.Tx) error) error {
	return s.located(s.kv.Update(ctx, fn))
}

// batch is update for writes that many goroutines make at once: writers
// arriving together may share one transaction and one fsync (see
// groupCommit). fn may run more than once and must be idempotent.
func (s *Store) batch(ctx context.Context, fn func(kv.Tx) error) error {
	return s.located(s.kv.Batch(ctx, fn))
}

func (s *Store) located(err error) error {
	var de *DamagedError
	if errors.As(err, &de) && de.Path == "" {
		de.Path = s.path
	}
	return err
}

// Backend is the kv backend under the store (for conformance tests and
// the etcd watch of dockca serve).
func (s *Store) Backend() kv.Backend { return s.kv }
