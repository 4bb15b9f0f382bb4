package serve

import (
	"errors"
	"net/http"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// requireAdmin lets a request through only when it presents, over mutual
// TLS, a valid and unrevoked client certificate of this CA with role
// admin: the access map says who can reach what, which is for admins.
func (s *Server) requireAdmin(r *http.Request) (*store.Certificate, error) {
	peer := peerCert(r)
	if peer == nil {
		return nil, errorf(http.StatusUnauthorized, "this needs an admin client certificate presented over mutual TLS")
	}
	rec, err := s.auth().Holder(r.Context(), peer, time.Now())
	switch {
	case errors.Is(err, ca.ErrRevoked), errors.Is(err, ca.ErrNotRenewable):
		return nil, errorf(http.StatusForbidden, "the certificate presented is not a valid certificate of this CA: %v", err)
	case err != nil:
		return nil, err
	}
	if rec.Kind != pki.KindClient || rec.Role != pki.RoleAdmin {
		return nil, errorf(http.StatusForbidden, "certificate %s (%s) is not an admin client certificate", rec.Serial, rec.Name)
	}
	return rec, nil
}

// handleAccess answers GET /v1/access[?group=G][&client=NAME]: the same
// JSON as `dockca access --json`.
func (s *Server) handleAccess(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.requireAdmin(r); err != nil {
		return err
	}
	q := api.AccessRequest{Group: r.URL.Query().Get("group"), Client: r.URL.Query().Get("client")}
	if q.Group != "" {
		if err := pki.CheckGroupName(q.Group); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
	}
	out, err := s.local.Access(r.Context(), q)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
