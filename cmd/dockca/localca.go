package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/contexts"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/store"
)

// localCA adapts the CA in --home to the interfaces of the contexts and
// daemonsetup packages. It opens the database and asks for the password
// only when first needed, so those packages can refuse bad input before
// anything is unlocked or issued.
type localCA struct {
	c  *cli.Context
	e  *env
	st *store.Store
	a  *ca.Authority
}

func newLocalCA(c *cli.Context, e *env) *localCA { return &localCA{c: c, e: e} }

func (l *localCA) store() (*store.Store, error) {
	if l.st == nil {
		st, err := openStore(l.c, l.e, false)
		if err != nil {
			return nil, err
		}
		l.st = st
	}
	return l.st, nil
}

func (l *localCA) authority(ctx context.Context) (*ca.Authority, error) {
	if l.a != nil {
		return l.a, nil
	}
	st, err := l.store()
	if err != nil {
		return nil, err
	}
	a, err := unlock(ctx, l.c, l.e, st, true)
	if err != nil {
		return nil, err
	}
	l.a = a
	return a, nil
}

func (l *localCA) Close() {
	if l.a != nil {
		l.a.Close()
	}
	if l.st != nil {
		l.st.Close()
	}
}

func (l *localCA) issue(ctx context.Context, r ca.Request) (*tlsbundle.Bundle, error) {
	if err := ca.Precheck(r); err != nil {
		return nil, err
	}
	a, err := l.authority(ctx)
	if err != nil {
		return nil, err
	}
	iss, err := a.Issue(ctx, r)
	if err != nil {
		return nil, err
	}
	return iss.Bundle()
}

// IssueClient implements contexts.Issuer.
func (l *localCA) IssueClient(ctx context.Context, client, role string, ttl time.Duration) (*contexts.Material, error) {
	return l.ReissueClient(ctx, "", client, role, ttl)
}

// ReissueClient implements contexts.Reissuer: a renewal at the local CA
// records the certificate it replaces (from), which then shows as
// superseded; from "" is a first issuance.
func (l *localCA) ReissueClient(ctx context.Context, from, client, role string, ttl time.Duration) (*contexts.Material, error) {
	b, err := l.issue(ctx, ca.Request{Kind: store.KindClient, Name: client, Role: role, TTL: ttl, RenewedFrom: from})
	if err != nil {
		return nil, err
	}
	if role == "" {
		role = ca.RoleAdmin
	}
	return &contexts.Material{Bundle: *b, Client: client, Role: role}, nil
}

// RevokeSuperseded revokes a renewed context's old certificate at the
// local CA, reason superseded.
func (l *localCA) RevokeSuperseded(ctx context.Context, _ string, old tlsbundle.Bundle) error {
	leaf, err := tlsbundle.Leaf(old.Cert)
	if err != nil {
		return err
	}
	a, err := l.authority(ctx)
	if err != nil {
		return err
	}
	reason, err := ca.ParseReason("superseded")
	if err != nil {
		return err
	}
	_, err = a.Revoke(ctx, leaf.SerialNumber, reason)
	return err
}

// IssueDaemon implements daemonsetup.Issuer.
func (l *localCA) IssueDaemon(ctx context.Context, host string, sans []string, ttl time.Duration) (*tlsbundle.Bundle, error) {
	return l.issue(ctx, ca.Request{Kind: store.KindDaemon, Name: host, SANs: sans, TTL: ttl})
}

// CACertificate implements daemonsetup.Issuer without unlocking anything.
func (l *localCA) CACertificate(ctx context.Context) ([]byte, error) {
	st, err := l.store()
	if err != nil {
		return nil, err
	}
	_, root, _, err := ca.LoadCertificates(ctx, st)
	if err != nil {
		return nil, err
	}
	return ca.PEMCert(root), nil
}

// Revoke implements contexts.Revoker: a removed context's certificate is
// no longer in use.
func (l *localCA) Revoke(ctx context.Context, serial string) error {
	n, err := store.ParseSerial(serial)
	if err != nil {
		return err
	}
	a, err := l.authority(ctx)
	if err != nil {
		return err
	}
	_, err = a.Revoke(ctx, n, ca.Reason{Name: "cessation-of-operation", Code: 5})
	return err
}

// revocationView answers contexts.StatusChecker from a read-only view of
// the local database, without the password.
type revocationView struct{ st *store.Store }

func (r revocationView) Revoked(ctx context.Context, serial string) (bool, error) {
	n, err := store.ParseSerial(serial)
	if err != nil {
		return false, err
	}
	rev, err := r.st.Revocation(ctx, n)
	return rev != nil, err
}

// openRevocationView returns a status checker when this machine holds the
// CA, and nil (status from the certificates alone) when it does not.
func openRevocationView(c *cli.Context, e *env) (contexts.StatusChecker, func(), error) {
	home, err := homeDir(c, e)
	if err != nil || !store.Exists(home) {
		return nil, func() {}, nil
	}
	st, err := store.Open(store.Path(home), &store.Options{ReadOnly: true})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			fmt.Fprintln(c.App.ErrWriter, "dockca: the CA database is in use; revocation status is not shown")
			return nil, func() {}, nil
		}
		return nil, nil, err
	}
	return revocationView{st: st}, func() { st.Close() }, nil
}
