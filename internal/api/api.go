// Package api holds the wire format of `dockca serve`: the JSON bodies of
// its HTTPS API under /v1 and of the admin API on its unix socket, shared by
// the server (package serve) and its clients (package enroll, the CLI), so
// the two cannot drift apart.
//
// HTTPS API (TLS 1.2+, JSON, errors as {"error": "..."} with a 4xx/5xx):
//
//	POST /v1/sign    SignRequest -> CertResponse; the token authorizes
//	POST /v1/renew   RenewRequest (may be empty) -> CertResponse; mutual TLS
//	POST /v1/revoke  RevokeRequest -> RevokeResponse; mutual TLS (own
//	                 certificate) or an admin revoke token (any serial)
//	GET  /v1/crl     DER (?format=pem for PEM), with ETag and Cache-Control
//	GET  /v1/roots   the root certificate, PEM
//	GET  /healthz    "ok"
//	GET  /metrics    Prometheus text format
//
// Admin API, plain HTTP on <home>/serve.sock (0600; the server also checks
// that the peer's uid is its own or root):
//
//	POST /admin/v1/tokens        TokenRequest -> TokenResponse
//	POST /admin/v1/token-sets    AdminTokensRequest -> AdminTokensResponse
//	GET  /admin/v1/tokens        -> []TokenInfo
//	POST /admin/v1/revoke        AdminRevokeRequest -> AdminRevokeResponse
//	POST /admin/v1/certificates  AdminCertificatesRequest -> list entries
//	POST /admin/v1/issue         AdminIssueRequest -> CertResponse, or
//	                             AdminIssueCheck when DryRun
//	GET  /admin/v1/crl           the current CRL, DER
//	GET  /admin/v1/backup        a consistent copy of the database
//	GET  /admin/v1/root          the root certificate, PEM
//	GET  /admin/v1/check         the database check report
//	GET  /admin/v1/policy        the stored policy (404 when none)
//	PUT  /admin/v1/policy        AdminPolicyRequest -> the stored policy
package api

import (
	"time"

	"github.com/dockca/dockca/pki"
)

// Paths of the HTTPS API.
const (
	PathSign    = "/v1/sign"
	PathRenew   = "/v1/renew"
	PathRevoke  = "/v1/revoke"
	PathCRL     = "/v1/crl"
	PathRoots   = "/v1/roots"
	PathPolicy  = "/v1/policy"
	PathHealthz = "/healthz"
	PathMetrics = "/metrics"
	// PathAccess answers the access map (AccessEntry) to a client that
	// presents a valid admin certificate over mutual TLS.
	PathAccess = "/v1/access"

	PathAdminTokens = "/admin/v1/tokens"
	PathAdminRevoke = "/admin/v1/revoke"
	PathAdminCerts  = "/admin/v1/certificates"
	PathAdminIssue  = "/admin/v1/issue"
	PathAdminCRL    = "/admin/v1/crl"
	PathAdminBackup = "/admin/v1/backup"
	PathAdminRoot   = "/admin/v1/root"
	PathAdminCheck  = "/admin/v1/check"
	// PathAdminRotation answers ca.RotationStatus (dockca rotate status).
	PathAdminRotation = "/admin/v1/rotation"
	// PathAdminRotate runs a rotation (POST AdminRotateRequest, answers
	// AdminRotateResponse): dockca rotate while dockca serve runs.
	PathAdminRotate = "/admin/v1/rotate"
	PathAdminPolicy = "/admin/v1/policy"
	PathAdminAccess = "/admin/v1/access"

	PathAdminTokenSets = "/admin/v1/token-sets"
	// PathAdminChain answers the trusted roots (current first), then the
	// live intermediates (current first), PEM. Before rotation: the root
	// and the intermediate, root
	// first: the trust a local authorization plugin needs while the
	// service holds the database. The admin socket also serves PathCRL.
	PathAdminChain = "/admin/v1/chain"
)

// GateALPN is the TLS application protocol dockca gate offers first, so
// that dockca audit can tell a gate from dockerd's own TLS listener during
// the handshake, before any client certificate is judged. Clients that do
// not offer it (the docker CLI) get HTTP/1.1 as before.
const (
	GateALPN = "dockca-gate"
)

// MaxAdminBodyBytes bounds admin socket bodies: a token set for a fleet is
// far larger than any HTTPS request.
const MaxAdminBodyBytes = 64 << 20

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 64 << 10

// SocketName is the admin socket's file name inside the dockca home.
const SocketName = "serve.sock"

// SignRequest enrolls with a one-time token.
type SignRequest struct {
	CSR   string `json:"csr"`   // PEM
	Token string `json:"token"` // JWT from `dockca token create`
}

// HeaderHolder, on an enrollment or a renewal, says where the certificate
// goes ("docker context prod on laptop-7"), for the CA's record (the
// service adds the address the request came from). A header, so that a
// service that predates it ignores it instead of refusing the request.
const HeaderHolder = "Dockca-Holder"

// RenewRequest optionally carries a CSR for a new key; empty renews the key
// of the presented certificate.
type RenewRequest struct {
	CSR string `json:"csr,omitempty"`
}

// CertResponse is an issued certificate.
type CertResponse struct {
	Cert  string `json:"cert"`  // the leaf, PEM
	Chain string `json:"chain"` // leaf then intermediate, PEM: what dockerd and docker read as cert.pem
	CA    string `json:"ca"`    // the root, PEM
	// Record fields, for display.
	Serial   string    `json:"serial"`
	Kind     string    `json:"kind"`
	Name     string    `json:"name"`
	Role     pki.Role  `json:"role,omitempty"`
	SANs     []string  `json:"sans,omitempty"`
	Groups   []string  `json:"groups,omitempty"` // a daemon's groups or a client's scope
	NotAfter time.Time `json:"not_after"`
}

// RevokeRequest revokes one certificate. Over mutual TLS without a token,
// the presented certificate is revoked (Serial, if set, must be its
// serial). With Token (an admin revoke token), the token's serial is.
type RevokeRequest struct {
	Serial string `json:"serial,omitempty"`
	Reason string `json:"reason,omitempty"`
	Token  string `json:"token,omitempty"`
}

// RevokeResponse says what was revoked.
type RevokeResponse struct {
	Serial    string    `json:"serial"`
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	Reason    string    `json:"reason"`
	RevokedAt time.Time `json:"revoked_at"`
	// Already is true when it had been revoked before.
	Already bool `json:"already,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

// MsgTokenUsed is the error of a 401 answer to a one-time token that was
// already spent; clients recognise it to explain it.
const MsgTokenUsed = "the token has already been used"

// TokenRequest asks the running service for a token (admin socket).
type TokenRequest struct {
	Kind    string   `json:"kind"`
	Name    string   `json:"name"`
	Role    pki.Role `json:"role,omitempty"`
	SANs    []string `json:"sans,omitempty"`
	Groups  []string `json:"groups,omitempty"`   // a daemon's groups or a client's scope
	CertTTL string   `json:"cert_ttl,omitempty"` // dockca duration: 30d, 12h
	TTL     string   `json:"ttl,omitempty"`      // token lifetime, Go duration
	CAURL   string   `json:"ca_url,omitempty"`   // default: the service's --address
	By      string   `json:"by,omitempty"`       // recorded as the creator
}

// TokenResponse is a minted token.
type TokenResponse struct {
	Token           string    `json:"token"`
	Info            TokenInfo `json:"info"`
	CAURL           string    `json:"ca_url"`
	RootFingerprint string    `json:"root_fingerprint"`
}

// TokenInfo describes a token without the token.
type TokenInfo struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	Name      string     `json:"name"`
	Role      pki.Role   `json:"role,omitempty"`
	SANs      []string   `json:"sans,omitempty"`
	Groups    []string   `json:"groups,omitempty"`
	CertTTL   string     `json:"cert_ttl,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	UsedAt    *time.Time `json:"used_at,omitempty"`
	Serial    string     `json:"serial,omitempty"`
}

// AdminRevokeRequest revokes by serial or name, like `dockca revoke`.
// Every target is resolved before anything is revoked.
type AdminRevokeRequest struct {
	Targets []string `json:"targets"`
	Reason  string   `json:"reason,omitempty"`
}

// AdminCertificatesRequest lists certificates like `dockca ls` (the
// filters) or `dockca show` (Arg, a serial or a name). The answer is a
// JSON array of the CLI's list entries.
type AdminCertificatesRequest struct {
	Kind           string `json:"kind,omitempty"`
	Status         string `json:"status,omitempty"`
	ExpiringWithin int64  `json:"expiring_within_seconds,omitempty"`
	Arg            string `json:"arg,omitempty"`
	PEM            bool   `json:"pem,omitempty"`
}

// AdminRevokeResponse lists what each target revoked, in order.
type AdminRevokeResponse struct {
	Results []RevokeResponse `json:"results"`
}

// AdminIssueRequest issues one certificate through the service, for a CSR
// made by the caller (whose key never travels).
type AdminIssueRequest struct {
	Kind       string   `json:"kind"`
	Name       string   `json:"name"`
	Role       pki.Role `json:"role,omitempty"`
	SANs       []string `json:"sans,omitempty"`
	Groups     []string `json:"groups,omitempty"` // a daemon's groups or a client's scope
	TTLSeconds int64    `json:"ttl_seconds,omitempty"`
	CSR        string   `json:"csr,omitempty"` // PEM; required unless DryRun
	// DryRun only applies the policy and answers AdminIssueCheck.
	DryRun bool `json:"dry_run,omitempty"`
	// By is recorded as the issuer (after "socket:").
	By string `json:"by,omitempty"`
	// RenewedFrom is the serial of the certificate this one replaces
	// (a local context renew): recorded as its predecessor.
	RenewedFrom string `json:"renewed_from,omitempty"`
	// Holder is where the certificate goes (the folder written).
	Holder string `json:"holder,omitempty"`
}

// AdminIssueCheck is what the policy made of an AdminIssueRequest.
type AdminIssueCheck struct {
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	Role      pki.Role  `json:"role,omitempty"`
	SANs      []string  `json:"sans,omitempty"`
	Groups    []string  `json:"groups,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// AdminTokensRequest mints a set of tokens in one transaction.
type AdminTokensRequest struct {
	Requests []TokenRequest `json:"requests"`
}

// AdminTokensResponse holds the minted tokens, in request order.
type AdminTokensResponse struct {
	Tokens []TokenResponse `json:"tokens"`
}

// AdminPolicyRequest stores a policy (YAML, the authz --policy format).
// AdminRotateRequest is dockca rotate intermediate|root|finish.
type AdminRotateRequest struct {
	What    string `json:"what"`               // "intermediate", "root" or "finish"
	KeyType string `json:"key_type,omitempty"` // default: the CA's
	TTL     int64  `json:"ttl_seconds,omitempty"`
	Overlap int64  `json:"overlap_seconds,omitempty"`
	Force   bool   `json:"force,omitempty"` // finish with dependents left
}

// AdminRotateResponse says what a rotation made.
type AdminRotateResponse struct {
	What       string `json:"what"`
	Generation int    `json:"generation"`
	// Subject and SHA256 name the new intermediate (rotate intermediate)
	// or the new root (rotate root); NotAfter is its expiry.
	Subject      string     `json:"subject,omitempty"`
	SHA256       string     `json:"sha256,omitempty"`
	NotAfter     time.Time  `json:"not_after,omitzero"`
	OverlapUntil *time.Time `json:"overlap_until,omitempty"`
	// Root and OldRoots (rotate finish): the root trusted now and the
	// ones retired; Forced counts certificates under them left valid.
	Root     string   `json:"root_sha256,omitempty"`
	OldRoots []string `json:"old_roots_sha256,omitempty"`
	Forced   int      `json:"forced,omitempty"`
	// Warning: the rotation is made, but what follows it did not happen
	// yet (the new generation's CRL, the service switching over).
	Warning string `json:"warning,omitempty"`
}

type AdminPolicyRequest struct {
	YAML string `json:"yaml"`
	By   string `json:"by,omitempty"`
}

// AccessRequest filters the access map: only daemons in Group, only the
// client certificates of Client (empty: all).
type AccessRequest struct {
	Group  string `json:"group,omitempty"`
	Client string `json:"client,omitempty"`
}

// AccessEntry is one pair of a valid client certificate and a valid
// daemon certificate such that the client reaches the daemon: its scope
// includes one of the daemon's groups, or it has none.
type AccessEntry struct {
	Client       string `json:"client"`
	ClientSerial string `json:"client_serial"`
	// Role is the role that applies on that daemon (the stored policy's
	// group_roles may narrow the certificate's role there).
	Role         pki.Role  `json:"role"`
	Daemon       string    `json:"daemon"`
	DaemonSerial string    `json:"daemon_serial"`
	Groups       []string  `json:"groups"`  // the daemon's; [] for none
	Expires      time.Time `json:"expires"` // the earlier of the two certificates' not-after
}
