package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dockca/dockca/store/kv"
)

// The CA's authorization policy (the `dockca authz --policy` YAML), kept
// beside the CA so that issuance knows which roles exist and the plugin can
// enforce the same file. The store keeps it as given; validation is the
// caller's (authz.LoadPolicy), which also supplies its role names.

var keyPolicy = []byte("policy")

// ErrNoPolicy means no policy has been stored: the built-in roles apply.
var ErrNoPolicy = fmt.Errorf("no policy is stored (the built-in roles apply): %w", ErrNotFound)

// Policy is a stored policy.
type Policy struct {
	YAML []byte `json:"yaml"`
	// Roles are every role the policy defines, built-in ones included.
	Roles     []string  `json:"roles"`
	SHA256    string    `json:"sha256"` // of YAML, hex
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by,omitempty"`
}

// ETag is the HTTP entity tag of the policy's YAML.
func (p *Policy) ETag() string { return `"` + p.SHA256 + `"` }

// Policy returns the stored policy, or ErrNoPolicy.
func (s *Store) Policy(ctx context.Context) (*Policy, error) {
	var p *Policy
	err := s.view(ctx, func(tx kv.Tx) error {
		v := tx.Bucket(bucketSettings).Get(keyPolicy)
		if v == nil {
			return ErrNoPolicy
		}
		p = new(Policy)
		if err := json.Unmarshal(v, p); err != nil {
			return damaged(s.path, "the stored policy does not decode (%v)", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return p, nil
}

// SetPolicy stores p (replacing any policy), filling its checksum and time.
func (s *Store) SetPolicy(ctx context.Context, p *Policy) error {
	sum := sha256.Sum256(p.YAML)
	p.SHA256 = hex.EncodeToString(sum[:])
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = time.Now().UTC()
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("store policy: %w", err)
	}
	err = s.update(ctx, func(tx kv.Tx) error {
		return tx.Bucket(bucketSettings).Put(keyPolicy, b)
	})
	if err != nil {
		return fmt.Errorf("store policy: %w", err)
	}
	return nil
}

// ReadPolicy reads the policy stored in the dockca home (read-only, a
// shared lock held only for the read), for the authorization plugin's
// local mode. ErrNoPolicy when none is stored; ErrLocked when a writer
// (dockca serve) holds the database past the lock timeout.
func ReadPolicy(ctx context.Context, home string) (*Policy, error) {
	st, err := Open(Path(home), &Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Policy(ctx)
}
