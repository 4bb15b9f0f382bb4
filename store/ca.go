package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dockca/dockca/store/kv"
)

var keyCA = []byte("ca")

// CA is the authority's own material. Keys are PEM, PKCS#8, encrypted under
// the CA password unless Encrypted is false (init --no-password).
type CA struct {
	Name             string    `json:"name"`
	KeyType          string    `json:"key_type"`
	RootDER          []byte    `json:"root_der"`
	IntermediateDER  []byte    `json:"intermediate_der"`
	RootKeyPEM       []byte    `json:"root_key_pem"`
	IntermediateKey  []byte    `json:"intermediate_key_pem"`
	Encrypted        bool      `json:"encrypted"`
	CreatedAt        time.Time `json:"created_at"`
	RootFingerprint  string    `json:"root_sha256"`
	ProvisionerJWK   []byte    `json:"provisioner_jwk,omitempty"`
	ProvisionerKeyID string    `json:"provisioner_kid,omitempty"`

	// Rotation (ca/rotate.go). Generation numbers the current root and
	// intermediate (0 and 1 both mean the first). CrossDER is the current
	// intermediate cross-signed by the previous root while a root rotation
	// overlaps (same subject and key, issuer the old root), OverlapUntil
	// when that overlap is planned to end. Previous lists every earlier
	// generation, oldest first, keys encrypted like the current ones.
	Generation   int          `json:"generation,omitempty"`
	CrossDER     []byte       `json:"cross_der,omitempty"`
	OverlapUntil time.Time    `json:"overlap_until,omitempty"`
	Previous     []Generation `json:"previous,omitempty"`
}

// Generation is a root and intermediate that no longer issue. The root is
// still trusted until RetiredAt is set (rotate finish); an intermediate
// under a trusted root verifies its certificates until they expire.
type Generation struct {
	Generation      int       `json:"generation"`
	KeyType         string    `json:"key_type"`
	RootDER         []byte    `json:"root_der"`
	RootKeyPEM      []byte    `json:"root_key_pem"`
	IntermediateDER []byte    `json:"intermediate_der"`
	IntermediateKey []byte    `json:"intermediate_key_pem"`
	CrossDER        []byte    `json:"cross_der,omitempty"`
	ReplacedAt      time.Time `json:"replaced_at"`
	// RetiredAt is when its root stopped being trusted (zero: still
	// trusted, or its root is still the current one).
	RetiredAt time.Time `json:"retired_at,omitempty"`
}

// CA returns the stored authority, or ErrNoCA.
func (s *Store) CA(ctx context.Context) (*CA, error) {
	var ca CA
	err := s.view(ctx, func(tx kv.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyCA)
		if v == nil {
			return ErrNoCA
		}
		if err := json.Unmarshal(v, &ca); err != nil {
			return damaged(s.path, "the CA record does not decode (%v)", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read ca: %w", err)
	}
	return &ca, nil
}

// InitCA stores a new authority; it refuses with ErrCAExists when one is
// already there, so an existing CA can never be overwritten.
func (s *Store) InitCA(ctx context.Context, ca *CA) error {
	b, err := json.Marshal(ca)
	if err != nil {
		return fmt.Errorf("store ca: %w", err)
	}
	return s.update(ctx, func(tx kv.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keyCA) != nil {
			return ErrCAExists
		}
		return meta.Put(keyCA, b)
	})
}

// UpdateCA replaces the stored authority record (for example to add the
// token provisioner key); fn edits a copy inside the transaction.
func (s *Store) UpdateCA(ctx context.Context, fn func(*CA) error) error {
	return s.update(ctx, func(tx kv.Tx) error {
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keyCA)
		if v == nil {
			return ErrNoCA
		}
		var ca CA
		if err := json.Unmarshal(v, &ca); err != nil {
			return err
		}
		if err := fn(&ca); err != nil {
			return err
		}
		b, err := json.Marshal(&ca)
		if err != nil {
			return err
		}
		return meta.Put(keyCA, b)
	})
}

// Setting returns a small named value kept beside the CA (nil when unset).
func (s *Store) Setting(ctx context.Context, key string) ([]byte, error) {
	var out []byte
	err := s.view(ctx, func(tx kv.Tx) error {
		if v := tx.Bucket(bucketSettings).Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// SetSetting stores a small named value.
func (s *Store) SetSetting(ctx context.Context, key string, value []byte) error {
	return s.update(ctx, func(tx kv.Tx) error {
		return tx.Bucket(bucketSettings).Put([]byte(key), value)
	})
}
