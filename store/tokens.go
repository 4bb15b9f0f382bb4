package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store/kv"
)

// Enrollment tokens. The token itself (a JWT) is never stored: only its key
// pair (the private half encrypted, see TokenProvisioner), a description of
// every token minted (Token) and, once spent, its ID in used_tokens. The
// buckets are created on first use so databases made before tokens existed
// need no migration.

var (
	bucketTokenMeta = []byte("tokens")
	keyProvisioner  = []byte("provisioner")
	tokenPrefix     = []byte("token/")
)

// ErrNoTokenProvisioner means no token signing key has been created yet.
var ErrNoTokenProvisioner = fmt.Errorf("no token signing key has been created: %w", ErrNotFound)

// TokenProvisioner is the JWK key pair that signs one-time tokens.
type TokenProvisioner struct {
	Name      string `json:"name"`
	KeyID     string `json:"kid"`
	PublicJWK []byte `json:"public_jwk"`
	// PrivateJWK is a compact JWE (PBES2, the CA password) when Encrypted,
	// else plain JWK JSON (a CA made with --no-password).
	PrivateJWK []byte    `json:"private_jwk"`
	Encrypted  bool      `json:"encrypted"`
	CreatedAt  time.Time `json:"created_at"`
}

// Token describes a minted one-time token, without the token.
type Token struct {
	ID        string        `json:"id"`
	Kind      string        `json:"kind"`
	Name      string        `json:"name"`
	Role      pki.Role      `json:"role,omitempty"`
	SANs      []string      `json:"sans,omitempty"`
	Groups    []string      `json:"groups,omitempty"` // a daemon's groups or a client's scope
	CertTTL   time.Duration `json:"cert_ttl,omitempty"`
	CreatedAt time.Time     `json:"created_at"`
	ExpiresAt time.Time     `json:"expires_at"`
	CreatedBy string        `json:"created_by,omitempty"`
	// Filled on reads from used_tokens.
	UsedAt *time.Time `json:"used_at,omitempty"`
	Serial string     `json:"serial,omitempty"`
}

// TokenProvisioner returns the token key, or ErrNoTokenProvisioner.
func (s *Store) TokenProvisioner(ctx context.Context) (*TokenProvisioner, error) {
	var p *TokenProvisioner
	err := s.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketTokenMeta)
		if b == nil {
			return ErrNoTokenProvisioner
		}
		v := b.Get(keyProvisioner)
		if v == nil {
			return ErrNoTokenProvisioner
		}
		p = new(TokenProvisioner)
		return json.Unmarshal(v, p)
	})
	if err != nil {
		return nil, fmt.Errorf("read token key: %w", err)
	}
	return p, nil
}

// EnsureTokenProvisioner stores p unless a token key exists already, and
// returns the one stored: two processes racing to create it agree on one.
func (s *Store) EnsureTokenProvisioner(ctx context.Context, p *TokenProvisioner) (*TokenProvisioner, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	var out TokenProvisioner
	err = s.update(ctx, func(tx kv.Tx) error {
		bucket, err := tx.CreateBucketIfNotExists(bucketTokenMeta)
		if err != nil {
			return err
		}
		if v := bucket.Get(keyProvisioner); v != nil {
			return json.Unmarshal(v, &out)
		}
		out = *p
		return bucket.Put(keyProvisioner, b)
	})
	if err != nil {
		return nil, fmt.Errorf("store token key: %w", err)
	}
	return &out, nil
}

// PutToken records a newly minted token. An ID seen before is refused.
func (s *Store) PutToken(ctx context.Context, t *Token) error {
	return s.PutTokens(ctx, []*Token{t})
}

// PutTokens records many newly minted tokens in one transaction: all of
// them or none. An ID seen before refuses the whole set. On a backend that
// caps a transaction's writes (etcd), a set larger than the cap is stored
// in several transactions; if a later one fails, the tokens stored by the
// earlier ones were never handed out (the caller prints tokens only after
// PutTokens returns), so they are recorded but can never be used.
func (s *Store) PutTokens(ctx context.Context, ts []*Token) error {
	vals := make([][]byte, len(ts))
	for i, t := range ts {
		if t.ID == "" {
			return errors.New("store tokens: empty id")
		}
		b, err := json.Marshal(t)
		if err != nil {
			return fmt.Errorf("store tokens: %w", err)
		}
		vals[i] = b
	}
	chunk := len(ts)
	if l, ok := s.kv.(kv.Limited); ok && chunk > l.MaxWrites() {
		chunk = l.MaxWrites()
	}
	for start := 0; start < len(ts); start += chunk {
		end := min(len(ts), start+chunk)
		err := s.update(ctx, func(tx kv.Tx) error {
			bucket, err := tx.CreateBucketIfNotExists(bucketTokenMeta)
			if err != nil {
				return err
			}
			for i := start; i < end; i++ {
				k := append(append([]byte(nil), tokenPrefix...), ts[i].ID...)
				if bucket.Get(k) != nil {
					return fmt.Errorf("store tokens: id %s exists", ts[i].ID)
				}
				if err := bucket.Put(k, vals[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			if start > 0 {
				return fmt.Errorf("store tokens %d to %d of %d (the first %d are recorded, never handed out, and unusable): %w", start+1, end, len(ts), start, err)
			}
			return err
		}
	}
	return nil
}

// Tokens lists every recorded token, newest first, with when it was used.
func (s *Store) Tokens(ctx context.Context) ([]*Token, error) {
	var out []*Token
	err := s.view(ctx, func(tx kv.Tx) error {
		bucket := tx.Bucket(bucketTokenMeta)
		if bucket == nil {
			return nil
		}
		used := tx.Bucket(bucketTokens)
		cur := bucket.Cursor()
		for k, v := cur.Seek(tokenPrefix); k != nil && bytes.HasPrefix(k, tokenPrefix); k, v = cur.Next() {
			var t Token
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode token %q: %w", k, err)
			}
			if u := used.Get([]byte(t.ID)); u != nil {
				var ut UsedToken
				if err := json.Unmarshal(u, &ut); err != nil {
					return err
				}
				at := ut.UsedAt
				t.UsedAt, t.Serial = &at, ut.Serial
			}
			out = append(out, &t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// spendToken marks a token ID used inside tx, or fails with ErrTokenUsed.
// PutCertificate calls it so that a token is spent if and only if its
// certificate is stored.
func spendToken(tx kv.Tx, id, serial string) error {
	bucket := tx.Bucket(bucketTokens)
	if bucket.Get([]byte(id)) != nil {
		return ErrTokenUsed
	}
	b, err := json.Marshal(&UsedToken{ID: id, UsedAt: time.Now().UTC(), Serial: serial})
	if err != nil {
		return err
	}
	return bucket.Put([]byte(id), b)
}
