// Package admin is the one definition of each operation an administrator
// performs on a dockca CA: issue and sign, list and show, revoke, the CRL,
// backup, tokens, check, the stored policy and CA rotation. Admin is the interface;
// Local implements it on the database (and, once a key is needed, the
// unlocked authority); Client implements it over the admin socket of a
// running `dockca serve`, whose handlers (Handler) are a thin adapter over
// a Local. Open makes the local-or-socket choice, once for every command:
// the socket first, so a command never waits on the database lock that
// the service holds.
package admin

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// Admin is every operation the admin commands perform on a CA.
type Admin interface {
	// Root is the CA's root certificate (no key is unlocked).
	Root(ctx context.Context) (*x509.Certificate, error)
	// Roots is the trust bundle every ca.pem carries: the current root,
	// then during a CA rotation's overlap the old one.
	Roots(ctx context.Context) ([]*x509.Certificate, error)
	// CheckRequest applies the issuance policy (built-in roles plus the
	// stored policy's) without signing or unlocking anything.
	CheckRequest(ctx context.Context, r ca.Request) (*ca.Normalized, error)
	// Issue signs and records one certificate; with r.CSR nil a key is
	// generated on this side and never travels.
	Issue(ctx context.Context, r ca.Request) (*ca.Issued, error)
	// Certificates answers ls (the filters) and show (q.Arg).
	Certificates(ctx context.Context, q api.AdminCertificatesRequest) ([]ca.ListEntry, error)
	// Revoke revokes by serial or name (see ca.Authority.RevokeTargets);
	// on failure the results say what was revoked before it.
	Revoke(ctx context.Context, targets []string, reason pki.Reason) ([]api.RevokeResponse, error)
	// CRL is the current CRL, DER, regenerated first when stale.
	CRL(ctx context.Context) ([]byte, error)
	// Backup writes a consistent copy of the database to w.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// CreateTokens mints one token per request, recorded in one
	// transaction: all or none.
	CreateTokens(ctx context.Context, reqs []api.TokenRequest) ([]api.TokenResponse, error)
	// Tokens lists the recorded tokens (never the tokens themselves).
	Tokens(ctx context.Context) ([]api.TokenInfo, error)
	// Check verifies the database (see ca.Check).
	Check(ctx context.Context) (*ca.CheckReport, error)
	// Policy is the stored policy, or an error matching store.ErrNoPolicy.
	Policy(ctx context.Context) (*store.Policy, error)
	// SetPolicy validates a policy (the authz --policy format) with the
	// plugin's own compiler and stores it.
	SetPolicy(ctx context.Context, yaml []byte, by string) (*store.Policy, error)
	// Access is the access map: which valid client certificates reach
	// which valid daemon certificates, with the role there (AccessMap).
	Access(ctx context.Context, q api.AccessRequest) ([]api.AccessEntry, error)
	// RotationStatus lists what still depends on an earlier CA generation
	// (dockca rotate status).
	RotationStatus(ctx context.Context) (*ca.RotationStatus, error)
	// Rotate runs dockca rotate intermediate, root or finish. With the
	// service's unlocked authority (over its admin socket), the service
	// issues from the new generation as soon as it answers.
	Rotate(ctx context.Context, r api.AdminRotateRequest) (*api.AdminRotateResponse, error)
	// Close releases the database or the connection.
	Close() error
}

// OpenOptions configure Open.
type OpenOptions struct {
	// Writable opens the database for writing when it is used locally;
	// read-only commands leave it shared.
	Writable bool
	// Password returns the CA password; it is called only when a key must
	// be unlocked locally.
	Password func() ([]byte, error)
	// Actor is recorded as the issuer of local issuances.
	Actor string
	// Store is where the CA is stored; its zero value is the bbolt file
	// of home.
	Store store.Config
}

// ErrNoHome means the home holds no database.
var ErrNoHome = errors.New("no certificate authority")

// Open returns the service's admin socket when `dockca serve` runs for
// home, and otherwise the database itself. The socket is tried first, so
// a command never waits for the lock the service holds; a database locked
// by anything else is reported after the store's lock timeout.
func Open(ctx context.Context, home string, o OpenOptions) (Admin, error) {
	cfg := o.Store.ForHome(home)
	if !cfg.IsEtcd() && !store.Exists(home) {
		return nil, fmt.Errorf("%w in %s (run 'dockca init', or set --home / DOCKCA_HOME)", ErrNoHome, home)
	}
	if c, err := Dial(home); err == nil {
		c.Actor = o.Actor
		return c, nil
	}
	if cfg.IsEtcd() {
		if ok, err := cfg.Exists(ctx); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("%w in %s (run 'dockca --store %s init')", ErrNoHome, cfg.URL, cfg.URL)
		}
	}
	st, err := store.OpenConfig(ctx, cfg, &store.Options{ReadOnly: !o.Writable})
	if errors.Is(err, store.ErrLocked) {
		// The service may have taken the lock before its socket was up.
		if c, derr := Dial(home); derr == nil {
			c.Actor = o.Actor
			return c, nil
		}
		return nil, fmt.Errorf("%w, and no dockca serve answers on the admin socket of %s", err, home)
	}
	if err != nil {
		return nil, err
	}
	return NewLocal(st, LocalOptions{Password: o.Password, Actor: o.Actor, OwnsStore: true}), nil
}
