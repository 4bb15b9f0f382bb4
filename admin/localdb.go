package admin

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/store"
)

// LocalDB is the database half of the authorization plugin's local
// revocation source (authz.LocalSource) for the dockca home: each read
// opens the database read-only with a lock attempt that never waits, so
// the plugin's request path never waits on a writer; a held database
// answers authz.ErrDBLocked and the plugin turns to the service's admin
// socket. It lives here, beside the other local database operations, so
// that package authz links neither the store nor the authority.
func LocalDB(home string) authz.LocalDB { return localDB{path: store.Path(home)} }

type localDB struct{ path string }

// lockedError is the store's lock error, matching authz.ErrDBLocked.
type lockedError struct{ error }

func (e lockedError) Is(target error) bool { return target == authz.ErrDBLocked }
func (e lockedError) Unwrap() error        { return e.error }

func (d localDB) Path() string { return d.path }

func (d localDB) open() (*store.Store, error) {
	st, err := store.Open(d.path, &store.Options{ReadOnly: true, LockTimeout: time.Nanosecond})
	if errors.Is(err, store.ErrLocked) {
		return nil, lockedError{err}
	}
	if err != nil {
		return nil, fmt.Errorf("open the dockca database: %w", err)
	}
	return st, nil
}

func (d localDB) Trust(ctx context.Context) (roots, issuers []*x509.Certificate, err error) {
	st, err := d.open()
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	_, t, err := ca.LoadTrust(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	return t.Roots, t.Issuers, nil
}

func (d localDB) Revocations(ctx context.Context) (map[string]*authz.Revocation, error) {
	st, err := d.open()
	if err != nil {
		return nil, err
	}
	revs, err := st.Revocations(ctx)
	st.Close()
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	m := make(map[string]*authz.Revocation, len(revs))
	for _, r := range revs {
		m[r.Serial] = &authz.Revocation{RevokedAt: r.RevokedAt, Reason: r.Reason}
	}
	return m, nil
}
