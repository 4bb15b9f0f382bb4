package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// AccessMap pairs every valid client certificate with every valid daemon
// certificate it reaches (pki.Through: its scope includes one of the
// daemon's groups, or it has no scope), with the role that applies there
// (pol.RoleOn). A pair whose role the policy does not know, or cannot
// decide, is left out: the plugin denies it everything. certs may hold
// any certificates; only valid client and daemon ones are paired. Entries
// are sorted by client, then daemon, then serials.
func AccessMap(certs []*store.Certificate, pol *authz.Policy, q api.AccessRequest, now time.Time) []api.AccessEntry {
	var clients, daemons []*store.Certificate
	for _, c := range certs {
		if c.Status(now) != store.StatusValid {
			continue
		}
		switch c.Kind {
		case pki.KindClient:
			if q.Client == "" || c.Name == q.Client {
				clients = append(clients, c)
			}
		case pki.KindDaemon:
			if q.Group == "" || slices.Contains(c.Groups, q.Group) {
				daemons = append(daemons, c)
			}
		}
	}
	known := pol.Roles()
	out := []api.AccessEntry{}
	for _, cl := range clients {
		for _, d := range daemons {
			through, ok := pki.Through(cl.Groups, d.Groups)
			if !ok {
				continue
			}
			role, err := pol.RoleOn(cl.Role, through)
			if err != nil || !slices.Contains(known, string(role)) {
				continue
			}
			groups := d.Groups
			if groups == nil {
				groups = []string{}
			}
			out = append(out, api.AccessEntry{Client: cl.Name, ClientSerial: cl.Serial, Role: role,
				Daemon: d.Name, DaemonSerial: d.Serial, Groups: groups, Expires: earlier(cl.NotAfter, d.NotAfter).UTC()})
		}
	}
	slices.SortFunc(out, func(a, b api.AccessEntry) int {
		for _, c := range [][2]string{{a.Client, b.Client}, {a.Daemon, b.Daemon}, {a.ClientSerial, b.ClientSerial}, {a.DaemonSerial, b.DaemonSerial}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	return out
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// StoredPolicy compiles the CA's stored policy, or the built-in roles when
// none is stored: the roles the plugins of this CA enforce.
func StoredPolicy(ctx context.Context, st *store.Store) (*authz.Policy, error) {
	p, err := st.Policy(ctx)
	if errors.Is(err, store.ErrNoPolicy) {
		return authz.BuiltinPolicy(), nil
	}
	if err != nil {
		return nil, err
	}
	pol, err := authz.LoadPolicy(bytes.NewReader(p.YAML))
	if err != nil {
		return nil, fmt.Errorf("the stored policy: %w", err)
	}
	return pol, nil
}

// Access implements Admin.
func (l *Local) Access(ctx context.Context, q api.AccessRequest) ([]api.AccessEntry, error) {
	now := time.Now()
	certs, err := l.st.List(ctx, store.Filter{Status: store.StatusValid, Now: now})
	if err != nil {
		return nil, err
	}
	pol, err := StoredPolicy(ctx, l.st)
	if err != nil {
		return nil, err
	}
	return AccessMap(certs, pol, q, now), nil
}

// Access implements Admin.
func (c *Client) Access(ctx context.Context, q api.AccessRequest) ([]api.AccessEntry, error) {
	var out []api.AccessEntry
	if err := c.do(ctx, http.MethodPost, api.PathAdminAccess, q, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (h *handler) access(w http.ResponseWriter, r *http.Request) error {
	var q api.AccessRequest
	if err := decode(r.Body, &q); err != nil {
		return err
	}
	out, err := h.l.Access(r.Context(), q)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
