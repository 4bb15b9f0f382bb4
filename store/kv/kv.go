// Package kv is the storage contract under dockca's store: ordered buckets
// of byte keys and values, read and changed in serializable transactions.
// The store's domain code (certificates, revocations, tokens, CRLs, the CA
// record) is written once against it, so every backend gets every
// atomicity rule by construction; a backend only has to keep this contract.
// Two backends exist: bbolt (one file, the default) and etcd (replicated,
// for several dockca serve replicas).
//
// The contract, in the spirit of certmagic's Storage:
//   - A Backend is safe for concurrent use by many goroutines, and by many
//     processes where the backend allows it (etcd; bbolt allows one writer
//     process).
//   - View runs fn on a consistent snapshot that includes every Update
//     that returned before View was called, by any process or replica.
//   - Update runs fn as one serializable transaction: all of its writes
//     become visible at once or none does, and it behaves as if no other
//     transaction ran between its first read and its commit. A backend may
//     run fn more than once (optimistic retries on conflict, shared group
//     commits), so fn must act only through tx and must not keep state
//     from an attempt that did not commit. An error returned by fn aborts
//     the transaction and is returned unchanged (errors.Is works on it).
//   - Batch is Update for writes that many goroutines make at once; a
//     backend may commit several of them in one transaction.
//   - Every method checks ctx before it starts; a backend that talks to a
//     server also gives up waiting when ctx ends. A transaction whose
//     commit was sent but not confirmed returns ErrUncertain: it may or
//     may not have been applied, and the caller must read to find out.
//   - A value returned by Get or a cursor is only valid until fn returns;
//     copy it to keep it. Keys sort bytewise.
//   - Transactions are small: a backend may refuse one with more than
//     MaxOps writes (ErrTooLarge), so bulk changes are split by the caller
//     where that is safe, and are one transaction where it is not.
package kv

import (
	"context"
	"errors"
)

// MaxOps is the largest number of writes one Update may make on every
// backend (etcd's default --max-txn-ops is 128; some of those are the
// transaction's own guards).
const MaxOps = 100

var (
	// ErrTooLarge means a transaction wrote more than the backend allows
	// in one transaction.
	ErrTooLarge = errors.New("the transaction is too large for the store")
	// ErrUncertain means the outcome of a commit is unknown (the
	// connection to the store was lost after the commit was sent).
	ErrUncertain = errors.New("the store did not confirm the transaction; it may or may not have been applied")
	// ErrUnavailable means the store cannot be reached.
	ErrUnavailable = errors.New("the store is unavailable")
	// ErrReadOnly means a write in a View, or on a backend opened read-only.
	ErrReadOnly = errors.New("the store is open read-only")
)

// Backend is a transactional ordered key-value store.
type Backend interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
	Batch(ctx context.Context, fn func(Tx) error) error
	// Location names the store in messages (a file path or an etcd URL
	// without credentials).
	Location() string
	Close() error
}

// StaleViewer is implemented by a backend whose View can be answered
// faster from a replica that may lag slightly (etcd: a serializable read
// from the nearest member, without a round of consensus). ViewStale sees a
// consistent snapshot, but perhaps not the latest one.
type StaleViewer interface {
	ViewStale(ctx context.Context, fn func(Tx) error) error
}

// Limited is implemented by a backend that caps the writes of one
// transaction (etcd: --max-txn-ops and --max-request-bytes).
type Limited interface {
	// MaxWrites is the most writes one transaction may make.
	MaxWrites() int
}

// Tx is one transaction.
type Tx interface {
	// Bucket returns the named bucket, or nil when it does not exist.
	// Buckets are created by CreateBucketIfNotExists in an Update (the
	// etcd backend has every bucket at all times).
	Bucket(name []byte) Bucket
	CreateBucketIfNotExists(name []byte) (Bucket, error)
	// DeleteBucket removes a bucket and everything in it.
	DeleteBucket(name []byte) error
	// Empty reports whether the store holds nothing at all.
	Empty() bool
	Writable() bool
}

// Bucket is an ordered set of keys with values.
type Bucket interface {
	// Get returns the value of key, or nil when it is absent.
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	Cursor() Cursor
	// ForEach calls fn for every key in order; an error stops it and is
	// returned.
	ForEach(fn func(k, v []byte) error) error
}

// Cursor walks a bucket in key order. Every method returns a nil key at
// the end.
type Cursor interface {
	First() (key, value []byte)
	Seek(seek []byte) (key, value []byte)
	Next() (key, value []byte)
}
