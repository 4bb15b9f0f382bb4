package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"time"

	"github.com/dockca/dockca/store/kv"

	"github.com/dockca/dockca/pki"
)

// Status is derived from the record, the revocation bucket and the clock;
// it is never stored, so it can never go stale.
type Status string

const (
	StatusValid   Status = "valid"
	StatusRevoked Status = "revoked"
	StatusExpired Status = "expired"
	// StatusSuperseded is an unexpired, unrevoked certificate that has been
	// renewed: its successor is the one in use.
	StatusSuperseded Status = "superseded"
)

// Certificate is dockca's record of one issued certificate.
type Certificate struct {
	Serial      string      `json:"serial"` // lowercase hex, see pki.FormatSerial
	Name        string      `json:"name"`
	Kind        pki.Kind    `json:"kind"`
	Role        pki.Role    `json:"role,omitempty"`
	SANs        []string    `json:"sans,omitempty"`
	NotBefore   time.Time   `json:"not_before"`
	NotAfter    time.Time   `json:"not_after"`
	IssuedAt    time.Time   `json:"issued_at"`
	IssuedBy    string      `json:"issued_by"`
	Fingerprint string      `json:"sha256"`
	DER         []byte      `json:"der"`
	Revocation  *Revocation `json:"-"` // filled on reads, kept in its own bucket
	// Groups are a daemon's groups, or a client's scope (none: every
	// daemon), as its certificate carries them.
	Groups []string `json:"groups,omitempty"`

	// TokenID is the one-time token spent with this record (tokens.go).
	TokenID string `json:"token_id,omitempty"`
	// RenewedFrom is the serial of the certificate presented to renew.
	// It must still be unrevoked when this record is written, checked in
	// the same transaction, so a renewal cannot outrun a revocation.
	RenewedFrom string `json:"renewed_from,omitempty"`
	// Holder is where the certificate went, as far as dockca knows: the
	// label the enrolling or renewing client gave (pki.HolderLabel) and
	// the address it came from, or the folder an admin command wrote.
	Holder string `json:"holder,omitempty"`
	// SupersededBy is the serial of a renewal made from this
	// certificate, filled on reads from the renewals index (never stored).
	SupersededBy string `json:"-"`
}

// Status reports the certificate's status at now.
func (c *Certificate) Status(now time.Time) Status {
	switch {
	case c.Revocation != nil:
		return StatusRevoked
	case !now.Before(c.NotAfter):
		return StatusExpired
	case c.SupersededBy != "":
		return StatusSuperseded
	default:
		return StatusValid
	}
}

// Revocation records why and when a certificate was revoked.
type Revocation struct {
	Serial        string    `json:"serial"`
	ReasonCode    int       `json:"reason_code"`
	Reason        string    `json:"reason"`
	RevokedAt     time.Time `json:"revoked_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	ProvisionerID string    `json:"provisioner_id,omitempty"`
	TokenID       string    `json:"token_id,omitempty"`
	MTLS          bool      `json:"mtls,omitempty"`
}

func serialKey(n *big.Int) []byte { return n.Bytes() }

func serialKeyFromHex(s string) ([]byte, error) {
	n, err := pki.ParseSerial(s)
	if err != nil {
		return nil, err
	}
	return serialKey(n), nil
}

func nameKey(name string, serial []byte) []byte {
	k := make([]byte, 0, len(name)+1+len(serial))
	k = append(k, name...)
	k = append(k, 0)
	return append(k, serial...)
}

// PutCertificate stores a newly issued certificate and its name index in one
// transaction, grouped with concurrent callers into one fsync. Storing the
// same serial twice is refused.
func (s *Store) PutCertificate(ctx context.Context, c *Certificate) error {
	key, err := serialKeyFromHex(c.Serial)
	if err != nil {
		return fmt.Errorf("store certificate: %w", err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("store certificate %s: %w", c.Serial, err)
	}
	err = s.batch(ctx, func(tx kv.Tx) error {
		certs := tx.Bucket(bucketCerts)
		if old := certs.Get(key); old != nil {
			if bytes.Equal(old, b) {
				return nil // a retried batch
			}
			return fmt.Errorf("serial %s is already stored", c.Serial)
		}
		if c.TokenID != "" {
			if err := spendToken(tx, c.TokenID, c.Serial); err != nil {
				return err
			}
		}
		if c.RenewedFrom != "" {
			from, err := serialKeyFromHex(c.RenewedFrom)
			if err != nil {
				return err
			}
			if tx.Bucket(bucketRevoked).Get(from) != nil {
				return fmt.Errorf("renewal of %s: %w", c.RenewedFrom, ErrRenewedFromRevoked)
			}
			if err := tx.Bucket(bucketRenewals).Put(nameKey(string(from), key), nil); err != nil {
				return err
			}
		}
		if err := certs.Put(key, b); err != nil {
			return err
		}
		return putIndexes(tx, key, c)
	})
	if err != nil {
		return fmt.Errorf("store certificate %s: %w", c.Serial, err)
	}
	return nil
}

// Certificate returns the record for serial, or an error matching
// ErrNotFound.
func (s *Store) Certificate(ctx context.Context, serial *big.Int) (*Certificate, error) {
	var c *Certificate
	err := s.view(ctx, func(tx kv.Tx) error {
		var err error
		c, err = getCert(tx, serialKey(serial))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", pki.FormatSerial(serial), err)
	}
	return c, nil
}

func getCert(tx kv.Tx, key []byte) (*Certificate, error) {
	v := tx.Bucket(bucketCerts).Get(key)
	if v == nil {
		return nil, ErrNotFound
	}
	c, err := decodeCert(v)
	if err != nil {
		return nil, damaged("", "the record of certificate %x does not decode (%v)", key, err)
	}
	if r := tx.Bucket(bucketRevoked).Get(key); r != nil {
		if c.Revocation, err = decodeRevocation(r); err != nil {
			return nil, damaged("", "the revocation of certificate %x does not decode (%v)", key, err)
		}
	}
	c.SupersededBy = successorOf(tx, key)
	return c, nil
}

func decodeCert(v []byte) (*Certificate, error) {
	var c Certificate
	if err := json.Unmarshal(v, &c); err != nil {
		return nil, fmt.Errorf("decode certificate: %w", err)
	}
	return &c, nil
}

func decodeRevocation(v []byte) (*Revocation, error) {
	var r Revocation
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode revocation: %w", err)
	}
	return &r, nil
}

// successorOf returns the serial of the last renewal recorded from the
// certificate with key, or "" when it has none.
func successorOf(tx kv.Tx, key []byte) string {
	b := tx.Bucket(bucketRenewals)
	if b == nil {
		return "" // a database written before renewals were indexed
	}
	prefix := append(append(make([]byte, 0, len(key)+1), key...), 0)
	var last []byte
	cur := b.Cursor()
	for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
		// A longer serial that starts with this one and a 0 byte shares
		// the prefix; only a renewal that names this one counts.
		v := tx.Bucket(bucketCerts).Get(k[len(prefix):])
		if v == nil {
			continue
		}
		c, err := decodeCert(v)
		if err != nil {
			continue
		}
		if f, err := serialKeyFromHex(c.RenewedFrom); err == nil && bytes.Equal(f, key) {
			last = k[len(prefix):]
		}
	}
	if last == nil {
		return ""
	}
	return pki.FormatSerial(new(big.Int).SetBytes(last))
}

// RenewalsOf returns the unexpired certificates renewed from serial (one
// step), so a revocation can follow a compromised key into its renewals.
func (s *Store) RenewalsOf(ctx context.Context, serial string, now time.Time) ([]*Certificate, error) {
	from, err := serialKeyFromHex(serial)
	if err != nil {
		return nil, err
	}
	prefix := append(append([]byte(nil), from...), 0)
	var out []*Certificate
	err = s.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketRenewals)
		if b == nil {
			return nil // a database written before renewals were indexed
		}
		cur := b.Cursor()
		for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
			c, err := getCert(tx, k[len(prefix):])
			if errors.Is(err, ErrNotFound) {
				continue // another serial's entry, split elsewhere (below)
			}
			if err != nil {
				return err
			}
			// A longer serial that starts with this one and a 0 byte
			// shares the prefix; its renewals are not this one's.
			if f, err := serialKeyFromHex(c.RenewedFrom); err != nil || !bytes.Equal(f, from) {
				continue
			}
			if now.Before(c.NotAfter) {
				out = append(out, c)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("renewals of %s: %w", serial, err)
	}
	sortByIssue(out)
	return out, nil
}

// CertificatesByName returns every certificate issued to name, oldest
// first; an empty result is not an error.
func (s *Store) CertificatesByName(ctx context.Context, name string) ([]*Certificate, error) {
	var out []*Certificate
	prefix := append([]byte(name), 0)
	err := s.view(ctx, func(tx kv.Tx) error {
		cur := tx.Bucket(bucketByName).Cursor()
		for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
			c, err := getCert(tx, k[len(prefix):])
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("certificates of %s: %w", name, err)
	}
	sortByIssue(out)
	return out, nil
}

// Filter selects certificates in List. Zero values select everything.
type Filter struct {
	Kind           pki.Kind
	Status         Status
	ExpiringWithin time.Duration // unexpired, unrevoked, NotAfter within this
	Now            time.Time     // zero means time.Now()
}

// List returns the certificates matching f, oldest issuance first.
func (s *Store) List(ctx context.Context, f Filter) ([]*Certificate, error) {
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	var out []*Certificate
	keep := func(c *Certificate) error {
		if f.Kind != "" && c.Kind != f.Kind {
			return nil
		}
		st := c.Status(now)
		if f.Status != "" && st != f.Status {
			return nil
		}
		if f.ExpiringWithin > 0 && (st != StatusValid || c.NotAfter.After(now.Add(f.ExpiringWithin))) {
			return nil
		}
		out = append(out, c)
		return nil
	}
	err := s.view(ctx, func(tx kv.Tx) error {
		if ok, err := listIndexed(tx, f, now, keep); ok || err != nil {
			return err
		}
		return tx.Bucket(bucketCerts).ForEach(func(k, _ []byte) error {
			c, err := getCert(tx, k)
			if err != nil {
				return err
			}
			return keep(c)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	sortByIssue(out)
	return out, nil
}

func sortByIssue(cs []*Certificate) {
	sort.SliceStable(cs, func(i, j int) bool {
		if !cs[i].IssuedAt.Equal(cs[j].IssuedAt) {
			return cs[i].IssuedAt.Before(cs[j].IssuedAt)
		}
		return cs[i].Serial < cs[j].Serial
	})
}

// Revoke records a revocation. It returns ErrAlreadyRevoked when the serial
// was revoked before (the first record is kept).
func (s *Store) Revoke(ctx context.Context, serial *big.Int, r *Revocation) error {
	r.Serial = pki.FormatSerial(serial)
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	// Revocations arriving together share a commit, like issuances.
	err = s.batch(ctx, func(tx kv.Tx) error {
		key := serialKey(serial)
		bucket := tx.Bucket(bucketRevoked)
		if bucket.Get(key) != nil {
			return ErrAlreadyRevoked
		}
		if err := bucket.Put(key, b); err != nil {
			return err
		}
		if err := putRevocationIndexes(tx, key, r); err != nil {
			return err
		}
		at, err := time.Now().UTC().MarshalBinary()
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyLastRevocation, at)
	})
	if err != nil {
		return fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	return nil
}

var keyLastRevocation = []byte("last_revocation")

// LastRevocation is when the latest revocation was recorded (zero when
// there is none): a CRL made before it is out of date. One read, so the
// CRL endpoint can ask on every request.
func (s *Store) LastRevocation(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := s.view(ctx, func(tx kv.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyLastRevocation); v != nil {
			return t.UnmarshalBinary(v)
		}
		return nil
	})
	return t, err
}

// Revocation returns the revocation of serial, or nil when it is not
// revoked. It is the hot path of the authorization plugin's local mode:
// one B+tree lookup in a read transaction.
func (s *Store) Revocation(ctx context.Context, serial *big.Int) (*Revocation, error) {
	var rev *Revocation
	err := s.view(ctx, func(tx kv.Tx) error {
		v := tx.Bucket(bucketRevoked).Get(serialKey(serial))
		if v == nil {
			return nil
		}
		rev = new(Revocation)
		return json.Unmarshal(v, rev)
	})
	if err != nil {
		return nil, fmt.Errorf("revocation of %s: %w", pki.FormatSerial(serial), err)
	}
	return rev, nil
}

// Revocations returns every revocation, for CRL generation.
func (s *Store) Revocations(ctx context.Context) ([]*Revocation, error) {
	var out []*Revocation
	err := s.view(ctx, func(tx kv.Tx) error {
		return tx.Bucket(bucketRevoked).ForEach(func(_, v []byte) error {
			var r Revocation
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, &r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	return out, nil
}
