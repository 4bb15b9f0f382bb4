package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// Handler serves the admin API (see package api) on a running service's
// admin socket: each route decodes its request, calls the Local and
// encodes the answer. The socket is reachable only by the CA's owner and
// root, so error messages are given in full.
func Handler(l *Local, o HandlerOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	h := &handler{l: l, log: o.Logger, o: o}
	mux := http.NewServeMux()
	route := func(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(pattern, h.wrap(fn))
	}
	route("POST "+api.PathAdminTokens, h.tokenCreate)
	route("POST "+api.PathAdminTokenSets, h.tokenSets)
	route("GET "+api.PathAdminTokens, h.tokenList)
	route("POST "+api.PathAdminRevoke, h.revoke)
	route("POST "+api.PathAdminCerts, h.certificates)
	route("POST "+api.PathAdminIssue, h.issue)
	route("GET "+api.PathAdminCRL, h.crl)
	route("GET "+api.PathAdminBackup, h.backup)
	route("GET "+api.PathAdminRoot, h.root)
	route("GET "+api.PathAdminCheck, h.check)
	route("GET "+api.PathAdminRotation, h.rotation)
	route("POST "+api.PathAdminRotate, h.rotate)
	route("GET "+api.PathAdminPolicy, h.policy)
	route("PUT "+api.PathAdminPolicy, h.setPolicy)
	route("POST "+api.PathAdminAccess, h.access)
	return mux
}

// HandlerOptions configure Handler.
type HandlerOptions struct {
	Logger *slog.Logger
	// Revoked is called for each certificate the socket revoked (not for
	// one that was revoked already), for the service's metrics.
	Revoked func(api.RevokeResponse)
}

type handler struct {
	l   *Local
	log *slog.Logger
	o   HandlerOptions
}

func (h *handler) wrap(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, api.MaxAdminBodyBytes)
		if err := fn(w, r); err != nil {
			status := Status(err)
			if status >= 500 {
				h.log.Error("admin request failed", "path", r.URL.Path, "err", err)
			}
			writeJSON(w, status, api.Error{Error: err.Error()})
		}
	})
}

// Status maps an admin operation's error to its HTTP status; the client
// maps it back (RemoteError).
func Status(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInvalidPolicy):
		return http.StatusUnprocessableEntity
	case errors.Is(err, pki.ErrPolicy), errors.Is(err, ca.ErrBadCSR), errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ca.ErrRotationInProgress), errors.Is(err, ca.ErrNoRotation), errors.Is(err, ca.ErrStillInUse):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

var errBadRequest = errors.New("bad request")

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func decode(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return fmt.Errorf("%w: malformed JSON: %v", errBadRequest, err)
	}
	return nil
}

func (h *handler) tokenSets(w http.ResponseWriter, r *http.Request) error {
	var req api.AdminTokensRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	out, err := h.createTokens(r, req.Requests)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.AdminTokensResponse{Tokens: out})
	return nil
}

func (h *handler) tokenCreate(w http.ResponseWriter, r *http.Request) error {
	var req api.TokenRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	out, err := h.createTokens(r, []api.TokenRequest{req})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out[0])
	return nil
}

func (h *handler) createTokens(r *http.Request, reqs []api.TokenRequest) ([]api.TokenResponse, error) {
	for i := range reqs {
		reqs[i].By = "socket:" + reqs[i].By
	}
	out, err := h.l.CreateTokens(r.Context(), reqs)
	if err != nil {
		return nil, err
	}
	for _, t := range out {
		h.log.Debug("token created", "id", t.Info.ID, "kind", t.Info.Kind, "name", t.Info.Name, "expires", t.Info.ExpiresAt, "by", t.Info.CreatedBy)
	}
	h.log.Info("tokens created", "count", len(out), "via", "admin socket")
	return out, nil
}

func (h *handler) tokenList(w http.ResponseWriter, r *http.Request) error {
	out, err := h.l.Tokens(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) revoke(w http.ResponseWriter, r *http.Request) error {
	var req api.AdminRevokeRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	reason := pki.Reason{Name: "unspecified"}
	if req.Reason != "" {
		var err error
		if reason, err = pki.ParseReason(req.Reason); err != nil {
			return err
		}
	}
	results, err := h.l.Revoke(r.Context(), req.Targets, reason)
	var done []string
	for _, res := range results {
		h.log.Info("revoked", "serial", res.Serial, "kind", res.Kind, "name", res.Name,
			"reason", reason.Name, "already", res.Already, "via", "admin socket")
		if !res.Already && h.o.Revoked != nil {
			h.o.Revoked(res)
		}
		done = append(done, res.Serial)
	}
	switch {
	case err != nil && len(done) > 0:
		return fmt.Errorf("%w (revoked before the failure: %s)", err, strings.Join(done, ", "))
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, api.AdminRevokeResponse{Results: results})
	return nil
}

func (h *handler) certificates(w http.ResponseWriter, r *http.Request) error {
	var req api.AdminCertificatesRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	entries, err := h.l.Certificates(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, entries)
	return nil
}

func (h *handler) issue(w http.ResponseWriter, r *http.Request) error {
	var req api.AdminIssueRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	cr := ca.Request{Kind: pki.Kind(req.Kind), Name: req.Name, Role: req.Role, SANs: req.SANs, Groups: req.Groups,
		TTL: time.Duration(req.TTLSeconds) * time.Second, Actor: "socket:" + req.By, RenewedFrom: req.RenewedFrom, Holder: req.Holder}
	if req.CSR != "" {
		csr, err := ca.ParseCSR([]byte(req.CSR))
		if err != nil {
			return err
		}
		cr.CSR = csr
	}
	if req.DryRun {
		n, err := h.l.CheckRequest(r.Context(), cr)
		if err != nil {
			return err
		}
		out := api.AdminIssueCheck{Kind: string(n.Kind), Name: n.Name, Role: n.Role, Groups: n.Groups, NotBefore: n.NotBefore, NotAfter: n.NotAfter}
		for _, s := range n.SANs {
			out.SANs = append(out.SANs, s.String())
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	if cr.CSR == nil {
		return fmt.Errorf("%w: the admin socket signs CSRs only (the key stays with the caller)", errBadRequest)
	}
	iss, err := h.l.Issue(r.Context(), cr)
	if err != nil {
		return err
	}
	h.log.Info("issued", "serial", iss.Record.Serial, "kind", iss.Record.Kind, "name", iss.Record.Name, "via", "admin socket")
	writeJSON(w, http.StatusOK, CertResponse(iss))
	return nil
}

// CertResponse is the wire form of an issued certificate.
func CertResponse(iss *ca.Issued) api.CertResponse {
	return api.CertResponse{
		Cert: string(pki.PEMCert(iss.Leaf)), Chain: string(iss.ChainPEM()), CA: string(iss.RootsPEM()),
		Serial: iss.Record.Serial, Kind: string(iss.Record.Kind), Name: iss.Record.Name, Role: iss.Record.Role,
		SANs: iss.Record.SANs, Groups: iss.Record.Groups, NotAfter: iss.Record.NotAfter,
	}
}

func (h *handler) crl(w http.ResponseWriter, r *http.Request) error {
	der, err := h.l.CRL(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Content-Length", strconv.Itoa(len(der)))
	_, err = w.Write(der)
	return err
}

func (h *handler) backup(w http.ResponseWriter, r *http.Request) error {
	started := false
	_, err := h.l.Store().BackupSized(r.Context(), func(size int64) (io.Writer, error) {
		started = true
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return w, nil
	})
	if err != nil && started {
		// Too late for an error status: the client sees a short body
		// against the Content-Length and fails.
		h.log.Error("backup stream failed", "err", err)
		return nil
	}
	if err == nil {
		h.log.Info("backup streamed", "via", "admin socket")
	}
	return err
}

func (h *handler) root(w http.ResponseWriter, r *http.Request) error {
	roots, err := h.l.Roots(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err = w.Write(pki.PEMChain(roots...))
	return err
}

func (h *handler) check(w http.ResponseWriter, r *http.Request) error {
	rep, err := h.l.Check(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (h *handler) rotation(w http.ResponseWriter, r *http.Request) error {
	st, err := h.l.RotationStatus(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (h *handler) rotate(w http.ResponseWriter, r *http.Request) error {
	var req api.AdminRotateRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	out, err := h.l.Rotate(r.Context(), req)
	if err != nil {
		return err
	}
	h.log.Info("CA rotated through the admin socket", "what", out.What, "generation", out.Generation, "sha256", out.SHA256, "forced", out.Forced)
	if out.Warning != "" {
		h.log.Error("after the rotation", "warning", out.Warning)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) policy(w http.ResponseWriter, r *http.Request) error {
	p, err := h.l.Policy(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (h *handler) setPolicy(w http.ResponseWriter, r *http.Request) error {
	var req api.AdminPolicyRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	p, err := h.l.SetPolicy(r.Context(), []byte(req.YAML), "socket:"+req.By)
	if err != nil {
		return err
	}
	h.log.Info("policy stored", "sha256", p.SHA256, "roles", p.Roles, "by", p.UpdatedBy)
	writeJSON(w, http.StatusOK, p)
	return nil
}
