package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/contexts"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// localCA adapts the CA of --home (the running service's admin socket, or
// the database) to the interfaces of the contexts and daemonsetup
// packages. It opens the CA and asks for the password only when first
// needed, so those packages can refuse bad input before anything is
// unlocked or issued.
type localCA struct {
	c   *cli.Context
	e   *env
	adm admin.Admin
	// groups are the scope of the client certificates or the groups of
	// the daemon certificate it issues (--scope, --group).
	groups []string
}

func newLocalCA(c *cli.Context, e *env) *localCA { return &localCA{c: c, e: e} }

func (l *localCA) admin() (admin.Admin, error) {
	if l.adm == nil {
		adm, err := openAdmin(l.c, l.e, true)
		if err != nil {
			return nil, err
		}
		l.adm = adm
	}
	return l.adm, nil
}

func (l *localCA) Close() {
	if l.adm != nil {
		l.adm.Close()
	}
}

func (l *localCA) issue(ctx context.Context, r ca.Request) (*tlsbundle.Bundle, error) {
	if err := ca.Precheck(r); err != nil {
		return nil, err
	}
	adm, err := l.admin()
	if err != nil {
		return nil, err
	}
	iss, err := adm.Issue(ctx, r)
	if err != nil {
		return nil, err
	}
	return iss.Bundle()
}

// IssueClient implements contexts.Issuer.
func (l *localCA) IssueClient(ctx context.Context, client string, role pki.Role, ttl time.Duration) (*contexts.Material, error) {
	return l.ReissueClient(ctx, "", client, role, ttl)
}

// ReissueClient implements contexts.Reissuer: a renewal at the local CA
// records the certificate it replaces (from), which then shows as
// superseded; from "" is a first issuance.
func (l *localCA) ReissueClient(ctx context.Context, from, client string, role pki.Role, ttl time.Duration) (*contexts.Material, error) {
	groups := l.groups
	if from != "" {
		// A renewal keeps the scope of the certificate it replaces.
		adm, err := l.admin()
		if err != nil {
			return nil, err
		}
		old, err := adm.Certificates(ctx, api.AdminCertificatesRequest{Arg: from})
		if err != nil {
			return nil, err
		}
		if len(old) == 1 {
			groups = old[0].Groups
		}
	}
	b, err := l.issue(ctx, ca.Request{Kind: pki.KindClient, Name: client, Role: role, Groups: groups, TTL: ttl, RenewedFrom: from})
	if err != nil {
		return nil, err
	}
	if role == "" {
		role = pki.RoleAdmin
	}
	return &contexts.Material{Bundle: *b, Client: client, Role: role}, nil
}

// RevokeSuperseded revokes a renewed context's old certificate at the
// local CA, reason superseded.
func (l *localCA) RevokeSuperseded(ctx context.Context, _ []string, old tlsbundle.Bundle) error {
	leaf, err := tlsbundle.Leaf(old.Cert)
	if err != nil {
		return err
	}
	adm, err := l.admin()
	if err != nil {
		return err
	}
	reason, err := pki.ParseReason("superseded")
	if err != nil {
		return err
	}
	_, err = adm.Revoke(ctx, []string{pki.FormatSerial(leaf.SerialNumber)}, reason)
	return err
}

// IssueDaemon implements daemonsetup.Issuer.
func (l *localCA) IssueDaemon(ctx context.Context, host string, sans []string, ttl time.Duration) (*tlsbundle.Bundle, error) {
	return l.issue(ctx, ca.Request{Kind: pki.KindDaemon, Name: host, SANs: sans, Groups: l.groups, TTL: ttl})
}

// CACertificate implements daemonsetup.Issuer without unlocking anything.
func (l *localCA) CACertificate(ctx context.Context) ([]byte, error) {
	adm, err := l.admin()
	if err != nil {
		return nil, err
	}
	roots, err := adm.Roots(ctx)
	if err != nil {
		return nil, err
	}
	return pki.PEMChain(roots...), nil
}

// Revoke implements contexts.Revoker: a removed context's certificate is
// no longer in use.
func (l *localCA) Revoke(ctx context.Context, serial string) error {
	if _, err := pki.ParseSerial(serial); err != nil {
		return err
	}
	adm, err := l.admin()
	if err != nil {
		return err
	}
	_, err = adm.Revoke(ctx, []string{serial}, pki.Reason{Name: "cessation-of-operation", Code: 5})
	return err
}

// revocationView answers contexts.StatusChecker from the CA of this
// machine (read-only, or through the running service), without the
// password.
type revocationView struct{ adm admin.Admin }

func (r revocationView) Revoked(ctx context.Context, serial string) (bool, error) {
	if _, err := pki.ParseSerial(serial); err != nil {
		return false, err
	}
	entries, err := r.adm.Certificates(ctx, api.AdminCertificatesRequest{Arg: serial})
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Serial == serial && e.Status == string(store.StatusRevoked) {
			return true, nil
		}
	}
	return false, nil
}

// openRevocationView returns a status checker when this machine holds the
// CA, and nil (status from the certificates alone) when it does not.
func openRevocationView(c *cli.Context, e *env) (contexts.StatusChecker, func(), error) {
	home, cfg, err := homeAndStore(c, e)
	if err != nil || (!cfg.IsEtcd() && !store.Exists(home)) {
		return nil, func() {}, nil
	}
	adm, err := openAdmin(c, e, false)
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			fmt.Fprintln(c.App.ErrWriter, "dockca: the CA database is in use; revocation status is not shown")
			return nil, func() {}, nil
		}
		return nil, nil, err
	}
	return revocationView{adm: adm}, func() { adm.Close() }, nil
}
