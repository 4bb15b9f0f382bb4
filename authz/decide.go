package authz

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dockca/dockca/pki"
)

// Revocation says that and why a certificate was revoked.
type Revocation struct {
	RevokedAt time.Time
	Reason    string // e.g. "key-compromise"; may be empty
}

// RevocationChecker answers whether a verified client certificate is
// revoked. (nil, nil) means not revoked; an error denies the request (fail
// closed) and its text is shown to the user, so it must not carry secrets.
// Local mode reads the dockca database; remote mode is CRLSource.
type RevocationChecker interface {
	Revoked(ctx context.Context, cert *x509.Certificate) (*Revocation, error)
}

// TrustSource answers the roots trusted now (current first). The slice
// must not be modified; a new slice means the trust changed.
type TrustSource interface {
	Roots() []*x509.Certificate
}

// Options configure the plugin.
type Options struct {
	// Name is the plugin name dockerd knows it by (default "dockca").
	Name string
	// Socket is where to listen (default /run/docker/plugins/NAME.sock).
	Socket string
	// Root is the dockca root certificate, the trust anchor (with Roots).
	Root *x509.Certificate
	// Roots are further trusted roots (an old root during a rotation's
	// overlap); optional.
	Roots []*x509.Certificate
	// Trust, when set, is asked for the trusted roots before each
	// verification: a rotation (a new root, or an old one retired) takes
	// effect on the next request, and the chain caches are dropped. The
	// revocation source implements it in local mode.
	Trust TrustSource
	// Revocations decides revocation; required. If it also implements
	// Runner (CRLSource does), Serve runs it for as long as it serves.
	Revocations RevocationChecker
	// Policy holds the roles; nil means BuiltinPolicy(). PolicySource says
	// where they came from, for the status ("" is the built-in roles).
	Policy       *Policy
	PolicySource string
	// PolicyReload, if set, is called every PolicyEvery (default 30s) by
	// Serve and the gate to pick up the CA's stored policy: a new policy
	// replaces the current one between two decisions; an error keeps the
	// current one (and is logged by the caller).
	PolicyReload func(ctx context.Context) (*Policy, string, error)
	PolicyEvery  time.Duration
	// Log receives operational warnings (nil: none).
	Log *slog.Logger
	// Audit receives one JSON line per decision; nil disables the audit.
	Audit *AuditLog
	// DenyLocal denies requests without a client certificate (the unix
	// socket). By default they are allowed: the socket is already root-only.
	DenyLocal bool
	// Containers looks up existing containers, exec instances and volumes
	// on dockerd's local socket, so that actions on them are judged by how
	// they were created. nil denies every such action for non-admin roles.
	Containers ContainerLookup
	// Groups are this daemon's groups (--group). A client certificate
	// with a scope (pki.ScopeOf) that includes none of them is denied
	// before any role rule; one without a scope reaches every daemon.
	Groups []string
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Runner is a background job Serve runs alongside the plugin.
type Runner interface {
	Run(ctx context.Context) error
}

// Decision is the outcome of one request.
type Decision struct {
	Allow  bool
	Msg    string // shown to the docker user on a denial
	User   string // certificate CN ("" for local requests)
	Serial string // lowercase hex
	Role   pki.Role
	// Scope is the client certificate's scope (nil: unscoped).
	Scope  []string
	Method string
	Path   string // without version prefix and query
	Rule   string // rule name, or a reason code such as "revoked"
}

// Authorizer makes decisions. It is safe for concurrent use.
type Authorizer struct {
	roots      atomic.Pointer[rootSet]
	trust      TrustSource
	revoked    RevocationChecker
	denyLocal  bool
	now        func() time.Time
	audit      *AuditLog
	chains     chainCache
	issuers    issuerCache
	containers ContainerLookup
	cache      containerCache
	name       string
	groups     []string
	policy     atomic.Pointer[policyInForce]
	stats      counters
	noCache    bool // benchmarks: no per-client chain cache
	noIssuers  bool // benchmarks: no verified-issuer cache either
}

// ErrOptions marks invalid Options.
var ErrOptions = errors.New("invalid authz options")

// New checks the options and builds an Authorizer.
func New(o Options) (*Authorizer, error) {
	if o.Root == nil {
		return nil, fmt.Errorf("%w: no dockca root certificate", ErrOptions)
	}
	if !o.Root.IsCA {
		return nil, fmt.Errorf("%w: the root certificate is not a CA", ErrOptions)
	}
	if o.Revocations == nil {
		return nil, fmt.Errorf("%w: no revocation checker", ErrOptions)
	}
	groups, err := pki.NormalizeGroups(o.Groups)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	a := &Authorizer{revoked: o.Revocations, trust: o.Trust,
		denyLocal: o.DenyLocal, now: o.Now, audit: o.Audit, containers: o.Containers, name: o.Name, groups: groups}
	a.roots.Store(newRootSet(append([]*x509.Certificate{o.Root}, o.Roots...)))
	a.SetPolicy(o.Policy, o.PolicySource)
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}

var versionPrefix = regexp.MustCompile(`^/v([0-9.]+)/`)

// normalizePath turns a RequestUri into the path dockerd's router matches
// (decoded, cleaned, without the /vX.Y prefix), its query, and the API
// version it names ("" for none).
func normalizePath(uri string) (string, url.Values, string, error) {
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return "", nil, "", err
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// A query Go rejects (e.g. with ';') might be split differently by
		// dockerd; refuse rather than guess.
		return "", nil, "", err
	}
	p := u.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	p = path.Clean(p)
	version := ""
	if v, rest, ok := cutVersion(p); ok {
		version, p = v, path.Clean("/"+rest)
	}
	return p, q, version, nil
}

// cutVersion splits a clean path p as versionPrefix does p + "/": the
// version and the rest after its slash. It is called for every decision,
// so it spares the regexp and the concatenations (the /v1.41 of
// /v1.41/containers/json is cut without allocating).
func cutVersion(p string) (version, rest string, ok bool) {
	if !strings.HasPrefix(p, "/v") {
		return "", "", false
	}
	j := 2
	for j < len(p) && (p[j] >= '0' && p[j] <= '9' || p[j] == '.') {
		j++
	}
	if j == 2 || j < len(p) && p[j] != '/' {
		return "", "", false
	}
	if j == len(p) {
		return p[2:j], "", true
	}
	return p[2:j], p[j+1:], true
}

// requestGuards refuses, for every role but admin, request shapes whose
// effect the plugin cannot see and so cannot judge. The plugin is shown a
// digest of the request, not the request (moby pkg/authorization): the last
// value of each header, while dockerd reads the first; and the body only
// when the first Content-Type is application/json, Content-Length is known
// and under 1 MiB, and the path does not end in /auth. Every difference
// between that digest and what dockerd acts on is closed here:
//   - API versions below 1.24, where POST /containers/{id}/start carries a
//     host config (privileged, binds, namespaces) applied at start;
//   - a body dockerd may read that the plugin was not shown: its fields
//     would override the query the plugin checks (r.Form puts body fields
//     first), or be decoded as the JSON the plugin never saw. Whatever
//     Content-Type the plugin sees, a request with Content-Length above
//     zero and no forwarded body, or a POST, PUT or PATCH without
//     Content-Length (chunked: dockerd reads it, dockerd never forwards it)
//     is denied. GET, HEAD and DELETE bodies are never read by dockerd
//     (net/http parses forms only for POST, PUT and PATCH, and no such
//     handler decodes one), so their chunked framing is not a channel;
//   - a form-encoded or multipart Content-Type, even when the plugin is
//     shown one without a body (repeated headers: the plugin sees the last).
//
// Behind dockca gate (frontDoor) the body is never hidden: the gate judges
// the bodies that decide and streams the others with a Content-Type that is
// not a form, so only the version and form rules apply.
func requestGuards(method, version string, headers map[string]string, body []byte, frontDoor bool) string {
	if version != "" && apiVersionBelow(version, 1, 24) {
		return fmt.Sprintf("through API version %s (below 1.24 a container start carries a host config the plugin cannot judge; use a current client)", version)
	}
	var contentType, contentLength string
	haveLength := false
	for k, v := range headers {
		switch {
		case strings.EqualFold(k, "Content-Type"):
			contentType = v
		case strings.EqualFold(k, "Content-Length"):
			contentLength, haveLength = strings.TrimSpace(v), true
		}
	}
	mt := strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]))
	if mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data" {
		return "with a form-encoded body (dockerd would read its fields as parameters the plugin cannot see)"
	}
	if len(body) > 0 || frontDoor {
		// Forwarded: dockerd saw an application/json first Content-Type
		// and a complete body under 1 MiB, which it decodes as JSON.
		return ""
	}
	switch {
	case haveLength && contentLength != "0":
		return fmt.Sprintf("with a body of %s bytes that dockerd would read but did not show the plugin (it shows only application/json bodies under 1 MiB, by the first Content-Type; this one was shown as %q); only admin may send such bodies through the plugin", contentLength, contentTypeShown(contentType))
	case !haveLength && (method == "POST" || method == "PUT" || method == "PATCH"):
		return fmt.Sprintf("with a body of unknown length (chunked) that dockerd would read but never shows the plugin (shown as %q); only admin may send such bodies through the plugin", contentTypeShown(contentType))
	}
	return ""
}

func contentTypeShown(ct string) string {
	if ct == "" {
		return "no Content-Type"
	}
	return ct
}

// apiVersionBelow reports whether v ("1.23") is below major.minor; an
// unparsable version counts as below, so it is refused.
func apiVersionBelow(v string, major, minor int) bool {
	a, b, ok := strings.Cut(v, ".")
	ma, err1 := strconv.Atoi(a)
	mi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return true
	}
	return ma < major || (ma == major && mi < minor)
}

// Decide authorizes one request and writes it to the audit log. It never
// returns an error: every failure is a denial that says why.
func (a *Authorizer) Decide(ctx context.Context, req *Request) Decision {
	d := a.decide(ctx, req)
	defer func() { a.stats.note(a.now(), d.Allow) }()
	if a.audit != nil {
		if err := a.audit.Write(a.now(), d); err != nil && d.Allow && d.User != "" {
			// An access that cannot be recorded is not granted; local root
			// keeps access so that it can fix the disk.
			d.Allow = false
			d.Msg = "dockca: the audit log cannot be written; ask the host's admin to check the plugin's audit log"
			d.Rule = "audit-failed"
		}
	}
	return d
}

func (a *Authorizer) decide(ctx context.Context, req *Request) Decision {
	d := Decision{Method: strings.ToUpper(req.RequestMethod)}
	p, q, version, uriErr := normalizePath(req.RequestURI)
	d.Path = p
	badURI := func(d Decision) Decision {
		d.Allow, d.Path, d.Rule = false, "(unparsable)", "bad-uri"
		d.Msg = "dockca: the request URI cannot be parsed, so it is denied"
		return d
	}

	if len(req.RequestPeerCertificates) == 0 {
		if req.User != "" || req.UserAuthNMethod != "" {
			d.User, d.Rule = req.User, "unknown-authn"
			d.Msg = fmt.Sprintf("dockca: user %q authenticated by %q without a certificate; only dockca TLS certificates are accepted", req.User, req.UserAuthNMethod)
			return d
		}
		d.Rule = "local"
		if uriErr != nil {
			return badURI(d)
		}
		a.noteUpdate(d.Method, p)
		if own, ok := a.containers.(ownLookups); ok && own.isOwnLookup(d.Method, splitPath(p), req.RequestHeaders) {
			d.Allow, d.Rule = true, "plugin-lookup"
			return d
		}
		if a.denyLocal {
			d.Msg = "dockca: requests without a client certificate (the local socket) are denied by the plugin's configuration"
			return d
		}
		d.Allow = true
		return d
	}

	now := a.now()
	a.syncRoots()
	key := chainKey(req.RequestPeerCertificates)
	var leaf *x509.Certificate
	if !a.noCache {
		leaf = a.chains.get(key, now)
	}
	if leaf == nil {
		chain, deny := a.verifyChain(&d, req, now)
		if deny != nil {
			return *deny
		}
		leaf = chain[0]
		if !a.noCache {
			a.chains.put(key, chain)
		}
	}
	d.User, d.Serial = leaf.Subject.CommonName, pki.SerialOf(leaf)
	who := func() string { return fmt.Sprintf("certificate %s (%s)", d.Serial, d.User) } // for denials only
	if req.User != "" && req.User != d.User {
		d.Rule = "user-mismatch"
		d.Msg = fmt.Sprintf("dockca: %s does not match the user %q dockerd reported", who(), req.User)
		return d
	}

	rev, err := a.revoked.Revoked(ctx, leaf)
	if err != nil {
		d.Rule = "revocation-unknown"
		d.Msg = fmt.Sprintf("dockca: cannot check whether %s is revoked, so it is denied: %v", who(), err)
		return d
	}
	if rev != nil {
		d.Rule = "revoked"
		reason := ""
		if rev.Reason != "" {
			reason = " (" + rev.Reason + ")"
		}
		d.Msg = fmt.Sprintf("dockca: %s was revoked at %s%s", who(), rev.RevokedAt.UTC().Format(time.RFC3339), reason)
		return d
	}

	// Where before what: a client scoped away from this daemon's groups
	// is denied before any role rule.
	d.Scope = pki.ScopeOf(leaf)
	through, reached := pki.Through(d.Scope, a.groups)
	if !reached {
		d.Rule = "out-of-scope"
		d.Msg = fmt.Sprintf("dockca: client %q (%s) has scope %s, which does not include this daemon's groups (%s)",
			d.User, d.Serial, strings.Join(d.Scope, ","), describeGroups(a.groups))
		return d
	}

	if len(leaf.Subject.OrganizationalUnit) != 1 {
		d.Rule = "no-role"
		d.Msg = fmt.Sprintf("dockca: %s carries %d roles (Subject OU); exactly one is required", who(), len(leaf.Subject.OrganizationalUnit))
		return d
	}
	d.Role = pki.RoleOf(leaf)
	pol := a.policy.Load().p
	role, err := pol.RoleOn(d.Role, through)
	if err != nil {
		d.Rule = "group-role"
		d.Msg = fmt.Sprintf("dockca: %s: %v", who(), err)
		return d
	}
	d.Role = role
	rules, ok := pol.roles[string(d.Role)]
	if !ok {
		d.Rule = "unknown-role"
		d.Msg = fmt.Sprintf("dockca: %s has role %q, which this plugin does not know (known: %s)", who(), d.Role, strings.Join(pol.Roles(), ", "))
		return d
	}
	if uriErr != nil {
		return badURI(d)
	}
	if d.Role != pki.RoleAdmin {
		if f := requestGuards(d.Method, version, req.RequestHeaders, req.RequestBody, req.FrontDoor); f != "" {
			d.Rule = "request-shape"
			d.Msg = fmt.Sprintf("dockca: role %s may not %s %s %s", d.Role, d.Method, d.Path, f)
			return d
		}
	}
	r := &request{method: d.Method, path: p, query: q, body: req.RequestBody, limits: &pol.limits}
	d = pol.evaluate(d, rules, r)
	if !d.Allow {
		return d
	}
	a.noteUpdate(d.Method, p)
	if d.Role == pki.RoleAdmin {
		return d
	}
	// Allowed by the rules as a request; now judge the existing objects it
	// reaches, which the request does not show.
	f := a.judgeTarget(ctx, r)
	if f == "" && d.Method == "POST" && p == "/containers/create" {
		f = a.createVolumeFinding(ctx, r)
	}
	if f != "" {
		d.Allow = false
		d.Rule = "existing-object"
		d.Msg = fmt.Sprintf("dockca: role %s may not %s %s %s", d.Role, d.Method, d.Path, f)
	}
	return d
}

func describeGroups(groups []string) string {
	if len(groups) == 0 {
		return "none"
	}
	return strings.Join(groups, ",")
}

// policyInForce is the policy decisions use and where it came from.
type policyInForce struct {
	p      *Policy
	source string
}

// SetPolicy replaces the policy between two decisions; nil means the
// built-in roles.
func (a *Authorizer) SetPolicy(p *Policy, source string) {
	if p == nil {
		p = BuiltinPolicy()
	}
	a.policy.Store(&policyInForce{p: p, source: source})
}

// noteUpdate forgets cached verdicts on containers when one is updated:
// /update is the only way their judged settings change.
func (a *Authorizer) noteUpdate(method, p string) {
	if method == "POST" && strings.HasPrefix(p, "/containers/") && strings.HasSuffix(p, "/update") {
		a.cache.clear()
	}
}

// verifyChain parses the peer certificates and verifies the leaf to the
// dockca root for client authentication at now; it returns the verified
// chain, leaf first.
func (a *Authorizer) verifyChain(d *Decision, req *Request, now time.Time) ([]*x509.Certificate, *Decision) {
	certs, err := parsePeerCertificates(req.RequestPeerCertificates)
	if err != nil {
		d.User, d.Rule = req.User, "bad-certificate"
		d.Msg = "dockca: the client certificate sent by dockerd cannot be read: " + err.Error()
		return nil, d
	}
	leaf := certs[0]
	d.User, d.Serial = leaf.Subject.CommonName, pki.SerialOf(leaf)
	who := fmt.Sprintf("certificate %s (%s)", d.Serial, d.User)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: a.roots.Load().pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}
	if len(certs) > 1 && !a.noIssuers {
		// A new client of a known intermediate: one signature to check.
		if anchor := a.issuers.get(certs[1].Raw); anchor != nil {
			fast := opts
			fast.Roots, fast.Intermediates = anchor, nil
			if chains, err := leaf.Verify(fast); err == nil {
				return chains[0], nil
			}
			// Fall through: the full verification says what is wrong.
		}
	}
	chains, err := leaf.Verify(opts)
	if err == nil && len(chains[0]) == 3 && !a.noIssuers && a.currentRoots(chains[0][2]) {
		a.issuers.put(chains[0][1])
	}
	if err != nil {
		var inv x509.CertificateInvalidError
		switch {
		case errors.As(err, &inv) && inv.Reason == x509.Expired && now.After(leaf.NotAfter):
			d.Rule = "expired"
			d.Msg = fmt.Sprintf("dockca: %s expired at %s; ask your dockca admin for a new one", who, leaf.NotAfter.UTC().Format(time.RFC3339))
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			d.Rule = "not-yet-valid"
			d.Msg = fmt.Sprintf("dockca: %s (or its issuer) is not valid at %s; check the clocks", who, now.UTC().Format(time.RFC3339))
		default:
			d.Rule = "untrusted"
			d.Msg = fmt.Sprintf("dockca: %s is not issued by this host's dockca authority: %v", who, err)
		}
		return nil, d
	}
	return chains[0], nil
}

func (p *Policy) evaluate(d Decision, rules []compiledRule, r *request) Decision {
	segs := splitPath(r.path)
	denied := func() string { return fmt.Sprintf("dockca: role %s may not %s %s", d.Role, d.Method, d.Path) } // for denials only
	for i := range rules {
		rule := &rules[i]
		if !rule.matches(r.method, segs) {
			continue
		}
		d.Rule = rule.Name
		if rule.Action == "deny" {
			d.Msg = denied()
			if rule.Message != "" {
				d.Msg += " (" + rule.Message + ")"
			}
			return d
		}
		for _, c := range rule.checks {
			if f := c(r); f != "" {
				d.Msg = denied() + " " + f
				return d
			}
		}
		for _, c := range rule.DenyIf {
			if hit, f := evalCondition(c, r); hit {
				d.Msg = denied() + " " + f
				return d
			}
		}
		d.Allow = true
		return d
	}
	d.Rule = "no-rule"
	d.Msg = denied()
	return d
}
