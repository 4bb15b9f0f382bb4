package serve

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/store"
)

// The admin API. While the service runs it holds the database's exclusive
// lock, so the admin commands that must keep working (token create, token
// ls, revoke) talk to it instead, over a unix socket in the dockca home.
// The socket is 0600 in the 0700 home, and every connection's peer uid
// (SO_PEERCRED) must be the service's own or root: the same people who
// could open dockca.db and unlock it. A token minted this way needs no
// password because the service has the token key unlocked already.

// listenAdmin listens on path, replacing a stale socket left by a crash.
// A live one cannot exist: its owner would hold the database lock.
func listenAdmin(path string, log *slog.Logger) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin socket %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale admin socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return &credListener{UnixListener: ln.(*net.UnixListener), uid: os.Getuid(), log: log}, nil
}

// credListener accepts only connections from uid or root.
type credListener struct {
	*net.UnixListener
	uid int
	log *slog.Logger
}

func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.UnixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == l.uid || uid == 0) {
			return c, nil
		}
		l.log.Warn("admin socket: refused a connection", "peer_uid", uid, "err", err)
		c.Close()
	}
}

func (s *Server) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+api.PathAdminTokens, s.instrument("admin_token_create", s.handleTokenCreate))
	mux.Handle("GET "+api.PathAdminTokens, s.instrument("admin_token_list", s.handleTokenList))
	mux.Handle("POST "+api.PathAdminRevoke, s.instrument("admin_revoke", s.handleAdminRevoke))
	mux.Handle("POST "+api.PathAdminCerts, s.instrument("admin_certificates", s.handleAdminCertificates))
	// A local authorization plugin (dockca authz --home) cannot open the
	// database while the service holds it: it reads the CA chain and the
	// current CRL here, without waiting on the lock.
	mux.Handle("GET "+api.PathAdminChain, s.instrument("admin_chain", s.handleAdminChain))
	mux.Handle("GET "+api.PathCRL, s.instrument("admin_crl", s.handleCRL))
	return mux
}

func (s *Server) handleAdminChain(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err := w.Write(append(ca.PEMCert(s.a.Root()), ca.PEMCert(s.a.Intermediate())...))
	return err
}

func (s *Server) handleTokenCreate(w http.ResponseWriter, r *http.Request) error {
	var req api.TokenRequest
	if err := decodeJSON(r.Body, &req, false); err != nil {
		return err
	}
	tr, err := TokenRequestFromAPI(req, s.url)
	if err != nil {
		return err
	}
	tr.CreatedBy = "socket:" + req.By
	tok, rec, err := ca.CreateToken(r.Context(), s.st, s.minter, tr)
	if err != nil {
		return err
	}
	s.log.Info("token created", "id", rec.ID, "kind", rec.Kind, "name", rec.Name, "expires", rec.ExpiresAt, "by", rec.CreatedBy)
	writeJSON(w, http.StatusOK, api.TokenResponse{Token: tok, Info: TokenInfo(rec), CAURL: tr.CAURL, RootFingerprint: s.RootFingerprint()})
	return nil
}

// TokenRequestFromAPI turns the wire request into ca's, parsing durations;
// defaultURL fills an empty CA URL.
func TokenRequestFromAPI(req api.TokenRequest, defaultURL string) (ca.TokenRequest, error) {
	tr := ca.TokenRequest{Kind: req.Kind, Name: req.Name, Role: req.Role, SANs: req.SANs, CAURL: req.CAURL}
	if tr.CAURL == "" {
		tr.CAURL = defaultURL
	}
	var err error
	if req.CertTTL != "" {
		if tr.CertTTL, err = ca.ParseTTL(req.CertTTL); err != nil {
			return tr, errorf(http.StatusBadRequest, "cert TTL: %v", err)
		}
	}
	if req.TTL != "" {
		if tr.TTL, err = ca.ParseTTL(req.TTL); err != nil {
			return tr, errorf(http.StatusBadRequest, "token TTL: %v", err)
		}
	}
	return tr, nil
}

// TokenInfo is the wire form of a token record.
func TokenInfo(t *store.Token) api.TokenInfo {
	out := api.TokenInfo{ID: t.ID, Kind: t.Kind, Name: t.Name, Role: t.Role, SANs: t.SANs, CreatedAt: t.CreatedAt,
		ExpiresAt: t.ExpiresAt, CreatedBy: t.CreatedBy, UsedAt: t.UsedAt, Serial: t.Serial}
	if t.CertTTL > 0 {
		out.CertTTL = ca.FormatTTL(t.CertTTL)
	}
	return out
}

func (s *Server) handleTokenList(w http.ResponseWriter, r *http.Request) error {
	toks, err := s.st.Tokens(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.TokenInfo, 0, len(toks))
	for _, t := range toks {
		out = append(out, TokenInfo(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleAdminRevoke(w http.ResponseWriter, r *http.Request) error {
	var req api.AdminRevokeRequest
	if err := decodeJSON(r.Body, &req, false); err != nil {
		return err
	}
	if len(req.Targets) == 0 {
		return errorf(http.StatusBadRequest, "no serial or name to revoke")
	}
	reason, err := parseReason(req.Reason)
	if err != nil {
		return err
	}
	results, err := s.a.RevokeTargets(r.Context(), req.Targets, reason)
	var resp api.AdminRevokeResponse
	var done []string
	for _, res := range results {
		if !res.Already {
			s.m.revocations.Inc()
		}
		s.log.Info("revoked", "serial", res.Record.Serial, "kind", res.Record.Kind, "name", res.Record.Name,
			"reason", reason.Name, "already", res.Already, "via", "admin socket")
		resp.Results = append(resp.Results, RevokeResponse(res))
		done = append(done, res.Record.Serial)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, "%v", err)
	case err != nil && len(done) > 0:
		return fmt.Errorf("%w (revoked before the failure: %s)", err, strings.Join(done, ", "))
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// CertificatesFilter is the store filter an admin certificates request
// names; the CLI uses it too when it reads the database itself.
func CertificatesFilter(req api.AdminCertificatesRequest) store.Filter {
	return store.Filter{Kind: store.Kind(req.Kind), Status: store.Status(req.Status),
		ExpiringWithin: time.Duration(req.ExpiringWithin) * time.Second}
}

// handleAdminCertificates answers `dockca ls` and `dockca show` while the
// service holds the database.
func (s *Server) handleAdminCertificates(w http.ResponseWriter, r *http.Request) error {
	var req api.AdminCertificatesRequest
	if err := decodeJSON(r.Body, &req, false); err != nil {
		return err
	}
	entries, err := ca.FindEntries(r.Context(), s.st, req.Arg, CertificatesFilter(req), req.PEM)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "%v", err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, entries)
	return nil
}
