package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/dockca/dockca/store/kv"

	"github.com/dockca/dockca/internal/atomicfile"
)

// Secondary indexes, written in the transaction that writes what they
// index, so that lookups and listings cost in proportion to what they
// return rather than to the size of the database:
//
//   - certs_by_name (name, 0, serial): every certificate of a name.
//   - certs_by_expiry (NotAfter as 8 big-endian bytes of Unix seconds,
//     serial): status and expiry listings. A certificate's status is not
//     stored (it changes with the clock), but it is a range of this index
//     minus the revoked bucket: expired = NotAfter up to now, valid = the
//     rest; revoked = the revoked bucket itself.
//   - crl_entries (serial -> revokedAt, expiresAt, reason in 17 bytes): the
//     compact form of each revocation that CRL generation scans without
//     decoding a JSON record per entry.
//   - meta/revocation_seq: a counter bumped by every revocation, so a CRL
//     can say exactly which revocations it covers.
//
// A database made before these existed gains them the first time it is
// opened for writing, after a backup copy of it is written beside it.

var (
	bucketByExpiry   = []byte("certs_by_expiry")
	bucketCRLEntries = []byte("crl_entries")
	keyIndexes       = []byte("indexes")
	keyRevocationSeq = []byte("revocation_seq")
	// indexesV1 marks a database whose secondary indexes are complete.
	indexesV1 = []byte("expiry,crl_entries/1")
)

// BackupSuffix ends the name of the copy written beside a database before
// it is given its indexes: dockca.db.pre-indexes-<UTC time>.bak.
const BackupSuffix = ".bak"

func expiryKey(notAfter time.Time, serial []byte) []byte {
	k := make([]byte, 8, 8+len(serial))
	binary.BigEndian.PutUint64(k, expirySeconds(notAfter))
	return append(k, serial...)
}

// expirySeconds orders times before 1970 first (as 0) and keeps the rest in
// order; no dockca certificate expires before it was made.
func expirySeconds(t time.Time) uint64 {
	if s := t.Unix(); s > 0 {
		return uint64(s)
	}
	return 0
}

// putIndexes writes the secondary index entries of a new record.
func putIndexes(tx kv.Tx, key []byte, c *Certificate) error {
	if err := tx.Bucket(bucketByName).Put(nameKey(c.Name, key), nil); err != nil {
		return err
	}
	return tx.Bucket(bucketByExpiry).Put(expiryKey(c.NotAfter, key), nil)
}

func crlEntryValue(r *Revocation) []byte {
	v := make([]byte, 17)
	binary.BigEndian.PutUint64(v[0:], uint64(r.RevokedAt.Unix()))
	var exp int64
	if !r.ExpiresAt.IsZero() {
		exp = r.ExpiresAt.Unix()
	}
	binary.BigEndian.PutUint64(v[8:], uint64(exp))
	v[16] = byte(r.ReasonCode)
	return v
}

// putRevocationIndexes records a revocation's CRL entry and bumps the
// revocation counter, inside the revocation's transaction.
func putRevocationIndexes(tx kv.Tx, key []byte, r *Revocation) error {
	if err := tx.Bucket(bucketCRLEntries).Put(key, crlEntryValue(r)); err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	seq := revocationSeq(tx) + 1
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return meta.Put(keyRevocationSeq, b[:])
}

func revocationSeq(tx kv.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyRevocationSeq); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// RevokedEntry is one revocation as a CRL lists it.
type RevokedEntry struct {
	// Serial is the serial number's big-endian magnitude (no sign byte).
	Serial     []byte
	RevokedAt  time.Time
	ExpiresAt  time.Time // zero when unknown
	ReasonCode int
}

// ScanRevoked calls fn for every revocation, in serial order, from one
// read transaction, and returns the revocation counter of that snapshot:
// a CRL made from the scan covers exactly the revocations up to it.
// Serial is only valid during the call.
func (s *Store) ScanRevoked(ctx context.Context, fn func(RevokedEntry) error) (seq uint64, err error) {
	err = s.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketCRLEntries)
		if b == nil {
			return errors.New("the database has no CRL index; open it for writing once to build it")
		}
		seq = revocationSeq(tx)
		cur := b.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if len(v) != 17 {
				return fmt.Errorf("CRL entry of %x is damaged", k)
			}
			e := RevokedEntry{
				Serial:     k,
				RevokedAt:  time.Unix(int64(binary.BigEndian.Uint64(v[0:])), 0).UTC(),
				ReasonCode: int(v[16]),
			}
			if exp := int64(binary.BigEndian.Uint64(v[8:])); exp != 0 {
				e.ExpiresAt = time.Unix(exp, 0).UTC()
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("scan revocations: %w", err)
	}
	return seq, nil
}

// RevocationSeq is the revocation counter: it grows by one with every
// revocation recorded.
func (s *Store) RevocationSeq(ctx context.Context) (uint64, error) {
	var seq uint64
	err := s.view(ctx, func(tx kv.Tx) error {
		seq = revocationSeq(tx)
		return nil
	})
	return seq, err
}

// ensureIndexes builds the secondary indexes of a database made before
// they existed: first a backup copy beside the file, then every index in
// one transaction, so a crash leaves the old database (and a rerun
// starts over) or the indexed one.
func (s *Store) ensureIndexes() error {
	var done, empty bool
	if err := s.kv.View(context.Background(), func(tx kv.Tx) error {
		done = bytes.Equal(tx.Bucket(bucketMeta).Get(keyIndexes), indexesV1)
		k, _ := tx.Bucket(bucketCerts).Cursor().First()
		r, _ := tx.Bucket(bucketRevoked).Cursor().First()
		empty = k == nil && r == nil
		return nil
	}); err != nil || done {
		return err
	}
	if !empty {
		backup := fmt.Sprintf("%s.pre-indexes-%s%s", s.path, time.Now().UTC().Format("20060102T150405.000000000Z"), BackupSuffix)
		err := atomicfile.Create(backup, 0o600, func(w io.Writer) error {
			_, err := s.Backup(context.Background(), w)
			return err
		})
		if err != nil {
			return fmt.Errorf("back up before adding indexes: %w", err)
		}
		s.indexBackup = backup
	}
	return s.kv.Update(context.Background(), buildIndexes)
}

func buildIndexes(tx kv.Tx) error {
	for _, name := range [][]byte{bucketByExpiry, bucketCRLEntries} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	expiry := tx.Bucket(bucketByExpiry)
	byName := tx.Bucket(bucketByName)
	if err := tx.Bucket(bucketCerts).ForEach(func(k, _ []byte) error {
		c, err := decodeCert(tx.Bucket(bucketCerts).Get(k))
		if err != nil {
			return fmt.Errorf("certificate %x: %w", k, err)
		}
		if err := byName.Put(nameKey(c.Name, k), nil); err != nil {
			return err
		}
		return expiry.Put(expiryKey(c.NotAfter, k), nil)
	}); err != nil {
		return err
	}
	entries := tx.Bucket(bucketCRLEntries)
	revoked := 0
	if err := tx.Bucket(bucketRevoked).ForEach(func(k, v []byte) error {
		revoked++
		r, err := decodeRevocation(v)
		if err != nil {
			return fmt.Errorf("revocation %x: %w", k, err)
		}
		return entries.Put(k, crlEntryValue(r))
	}); err != nil {
		return err
	}
	// The counter starts above zero, so that every CRL made before it
	// existed (RevocationSeq 0) counts as out of date once.
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], uint64(revoked)+1)
	if err := tx.Bucket(bucketMeta).Put(keyRevocationSeq, seq[:]); err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyIndexes, indexesV1)
}

// listIndexed answers List from the indexes when f selects by status or
// expiry; ok is false when it has to be a full scan (no such filter, or a
// database opened read-only before it was indexed).
func listIndexed(tx kv.Tx, f Filter, now time.Time, keep func(*Certificate) error) (ok bool, err error) {
	expiry := tx.Bucket(bucketByExpiry)
	if expiry == nil || !bytes.Equal(tx.Bucket(bucketMeta).Get(keyIndexes), indexesV1) {
		return false, nil
	}
	visit := func(key []byte) error {
		c, err := getCert(tx, key)
		if err != nil {
			return err
		}
		return keep(c)
	}
	// The ranges are a second wider than the exact test keep applies, so
	// rounding NotAfter to seconds never drops a match.
	nowSec := expirySeconds(now)
	switch {
	case f.Status == StatusRevoked:
		return true, tx.Bucket(bucketRevoked).ForEach(func(k, _ []byte) error { return visit(k) })
	case f.ExpiringWithin > 0:
		return true, scanExpiry(expiry, nowSec-min(nowSec, 1), expirySeconds(now.Add(f.ExpiringWithin))+1, visit)
	case f.Status == StatusExpired:
		return true, scanExpiry(expiry, 0, nowSec+1, visit)
	case f.Status == StatusValid:
		return true, scanExpiry(expiry, nowSec-min(nowSec, 1), math.MaxUint64, visit)
	}
	return false, nil
}

// scanExpiry visits the serials whose NotAfter second is in [from, to].
func scanExpiry(b kv.Bucket, from, to uint64, visit func([]byte) error) error {
	var start [8]byte
	binary.BigEndian.PutUint64(start[:], from)
	cur := b.Cursor()
	for k, _ := cur.Seek(start[:]); k != nil; k, _ = cur.Next() {
		if len(k) < 8 {
			continue
		}
		if binary.BigEndian.Uint64(k) > to {
			break
		}
		if err := visit(k[8:]); err != nil {
			return err
		}
	}
	return nil
}

// IndexBackup is the copy written beside the database when this Open gave
// it its indexes, or "".
func (s *Store) IndexBackup() string { return s.indexBackup }
