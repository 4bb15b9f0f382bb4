package admin

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// SettingURL is the store setting where dockca serve records its URL, so
// tokens minted while it is stopped know their audience.
const SettingURL = "serve.url"

// LocalOptions configure a Local.
type LocalOptions struct {
	// Password returns the CA password, called only when a key must be
	// unlocked (nil: the CA must be unencrypted or already unlocked).
	Password func() ([]byte, error)
	// Actor is recorded as the issuer when the authority is opened here.
	Actor string
	// Authority and Minter are already unlocked (dockca serve); the Local
	// then never opens or closes them.
	Authority *ca.Authority
	Minter    *ca.TokenMinter
	// CAURL is the default audience of tokens; empty: the URL dockca
	// serve recorded.
	CAURL string
	// KeysChecked, for Check, says how the keys were verified when they
	// were unlocked already (see ca.CheckOptions).
	KeysChecked string
	KeyProblems []store.Problem
	// OwnsStore closes the store with the Local.
	OwnsStore bool
	// Reload, with Authority, swaps in a new CA generation after Rotate
	// (dockca serve: it unlocks the new keys and issues its certificate
	// from them).
	Reload func(context.Context) error
}

// Local performs the admin operations on the database itself.
type Local struct {
	st *store.Store
	o  LocalOptions

	mu      sync.Mutex
	a       *ca.Authority
	withCRL bool
	minter  *ca.TokenMinter
	crlGen  singleflight.Group
}

// NewLocal adapts st (and, when given, an unlocked authority) to Admin.
func NewLocal(st *store.Store, o LocalOptions) *Local {
	l := &Local{st: st, o: o, a: o.Authority, minter: o.Minter}
	if o.Authority != nil {
		l.withCRL = true
	}
	return l
}

var _ Admin = (*Local)(nil)

// Rotate implements Admin.
func (l *Local) Rotate(ctx context.Context, r api.AdminRotateRequest) (*api.AdminRotateResponse, error) {
	out := &api.AdminRotateResponse{What: r.What}
	if r.What == "finish" {
		stat, err := ca.FinishRotation(ctx, l.st, r.Force, time.Now())
		if err != nil {
			return nil, err
		}
		out.Generation, out.Root, out.OldRoots = stat.Generation, stat.Root, stat.OldRoots
		for _, d := range stat.Dependents {
			if d.OldRoot {
				out.Forced++
			}
		}
		out.Warning = l.afterRotation(ctx, false)
		return out, nil
	}
	o := ca.RotateOptions{TTL: time.Duration(r.TTL) * time.Second, Overlap: time.Duration(r.Overlap) * time.Second}
	if r.KeyType != "" {
		kt, err := pki.ParseKeyType(r.KeyType)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadRequest, err)
		}
		o.KeyType = kt
	}
	var (
		res *ca.RotationResult
		err error
	)
	switch r.What {
	case "intermediate", "root":
		if o.Password, err = l.password(ctx); err != nil {
			return nil, err
		}
		if r.What == "root" {
			res, err = ca.RotateRoot(ctx, l.st, o)
		} else {
			res, err = ca.RotateIntermediate(ctx, l.st, o)
		}
	default:
		return nil, fmt.Errorf("%w: rotate %q: want intermediate, root or finish", errBadRequest, r.What)
	}
	if err != nil {
		return nil, err
	}
	made := res.Intermediate
	if r.What == "root" {
		made = res.Root
		out.OverlapUntil = &res.OverlapUntil
	}
	out.Generation, out.Subject, out.SHA256, out.NotAfter = res.Generation, made.Subject.CommonName, pki.Fingerprint(made), made.NotAfter.UTC()
	out.Warning = l.afterRotation(ctx, true)
	return out, nil
}

// afterRotation moves the authority to the new generation: the service's
// through Reload; here, an authority unlocked before is dropped, and a
// new intermediate's CRL is made at once (the old one's stays available
// per issuer from the service). What failed is returned as a warning: the
// rotation itself is made, and the rest happens later by itself.
func (l *Local) afterRotation(ctx context.Context, newIssuer bool) string {
	if l.o.Reload != nil {
		if err := l.o.Reload(ctx); err != nil {
			return fmt.Sprintf("rotated, but the service did not switch to the new generation yet (it retries every few seconds): %v", err)
		}
		return ""
	}
	l.mu.Lock()
	if l.a != nil && l.o.Authority == nil {
		l.a.Close()
		l.a = nil
	}
	l.mu.Unlock()
	if !newIssuer {
		return ""
	}
	if _, err := l.authority(ctx, true); err != nil {
		return fmt.Sprintf("rotated, but the CRL of the new intermediate was not made (the next revocation or start of the service makes it): %v", err)
	}
	return ""
}

// SetAuthority replaces the unlocked authority a Local was made with
// (dockca serve, after a rotation made elsewhere): operations started
// afterwards use a. The Local still never closes it.
func (l *Local) SetAuthority(a *ca.Authority) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.a, l.o.Authority, l.withCRL = a, a, true
}

// Store is the database the Local works on.
func (l *Local) Store() *store.Store { return l.st }

func (l *Local) password(ctx context.Context) ([]byte, error) {
	rec, err := l.st.CA(ctx)
	if err != nil {
		return nil, err
	}
	if !rec.Encrypted {
		return nil, nil
	}
	if l.o.Password == nil {
		return nil, errors.New("no CA password")
	}
	return l.o.Password()
}

// authority unlocks the CA on first use; withCRL also turns on CRL
// generation (revoke, crl), which plain issuance leaves off.
func (l *Local) authority(ctx context.Context, withCRL bool) (*ca.Authority, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.a != nil && (l.withCRL || !withCRL) {
		return l.a, nil
	}
	if l.o.Authority != nil {
		return nil, errors.New("the service's authority cannot generate CRLs")
	}
	pw, err := l.password(ctx)
	if err != nil {
		return nil, err
	}
	a, err := ca.Open(ctx, l.st, ca.OpenOptions{Password: pw, Actor: l.o.Actor, CRL: withCRL})
	if err != nil {
		return nil, err
	}
	if l.a != nil {
		l.a.Close()
	}
	l.a, l.withCRL = a, withCRL
	return a, nil
}

func (l *Local) tokenMinter(ctx context.Context) (*ca.TokenMinter, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.minter != nil {
		return l.minter, nil
	}
	pw, err := l.password(ctx)
	if err != nil {
		return nil, err
	}
	m, err := ca.UnlockTokenKey(ctx, l.st, pw)
	if err != nil {
		return nil, err
	}
	l.minter = m
	return m, nil
}

// Root implements Admin.
func (l *Local) Root(ctx context.Context) (*x509.Certificate, error) {
	_, root, _, err := ca.LoadCertificates(ctx, l.st)
	return root, err
}

// RotationStatus implements Admin.
func (l *Local) RotationStatus(ctx context.Context) (*ca.RotationStatus, error) {
	return ca.Status(ctx, l.st, time.Now())
}

// Roots implements Admin.
func (l *Local) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	_, t, err := ca.LoadTrust(ctx, l.st)
	if err != nil {
		return nil, err
	}
	return t.Roots, nil
}

// CheckRequest implements Admin.
func (l *Local) CheckRequest(ctx context.Context, r ca.Request) (*ca.Normalized, error) {
	return ca.CheckRequest(ctx, l.st, r)
}

// Issue implements Admin. The request is checked before the password is
// asked for.
func (l *Local) Issue(ctx context.Context, r ca.Request) (*ca.Issued, error) {
	if _, err := l.CheckRequest(ctx, r); err != nil {
		return nil, err
	}
	a, err := l.authority(ctx, false)
	if err != nil {
		return nil, err
	}
	return a.Issue(ctx, r)
}

// CertificatesFilter is the store filter an admin certificates request
// names.
func CertificatesFilter(q api.AdminCertificatesRequest) store.Filter {
	return store.Filter{Kind: pki.Kind(q.Kind), Status: store.Status(q.Status),
		ExpiringWithin: time.Duration(q.ExpiringWithin) * time.Second}
}

// Certificates implements Admin.
func (l *Local) Certificates(ctx context.Context, q api.AdminCertificatesRequest) ([]ca.ListEntry, error) {
	return ca.FindEntries(ctx, l.st, q.Arg, CertificatesFilter(q), q.PEM)
}

// RevokeResponse is the wire form of a revocation's result; local and
// remote revocations are printed from it alike.
func RevokeResponse(res *ca.RevokeResult) api.RevokeResponse {
	r := res.Record
	out := api.RevokeResponse{Serial: r.Serial, Kind: string(r.Kind), Name: r.Name, Already: res.Already}
	if r.Revocation != nil {
		out.Reason, out.RevokedAt = r.Revocation.Reason, r.Revocation.RevokedAt
	}
	return out
}

// Revoke implements Admin. Every target is resolved before the password
// is asked for, so an unknown one revokes nothing.
func (l *Local) Revoke(ctx context.Context, targets []string, reason pki.Reason) ([]api.RevokeResponse, error) {
	if len(targets) == 0 {
		return nil, fmt.Errorf("no serial or name to revoke: %w", pki.ErrPolicy)
	}
	if _, err := l.st.ResolveAll(ctx, targets, true, time.Now()); err != nil {
		return nil, err
	}
	a, err := l.authority(ctx, true)
	if err != nil {
		return nil, err
	}
	results, err := a.RevokeTargets(ctx, targets, reason)
	out := make([]api.RevokeResponse, 0, len(results))
	for _, r := range results {
		out = append(out, RevokeResponse(r))
	}
	return out, err
}

// CRL implements Admin: the stored CRL while fresh (no password), else a
// new one; concurrent callers share one regeneration.
func (l *Local) CRL(ctx context.Context) ([]byte, error) {
	crl, err := l.CurrentCRL(ctx)
	if err != nil {
		return nil, err
	}
	return crl.DER, nil
}

// CurrentCRL is CRL with the stored record (number, times), for the
// service's CRL endpoint.
func (l *Local) CurrentCRL(ctx context.Context) (*store.CRL, error) {
	crl, err := ca.CurrentCRL(ctx, l.st, time.Now())
	if err != nil || crl != nil {
		return crl, err
	}
	v, err, _ := l.crlGen.Do("crl", func() (any, error) {
		if fresh, err := ca.CurrentCRL(ctx, l.st, time.Now()); err != nil || fresh != nil {
			return fresh, err
		}
		a, err := l.authority(ctx, true)
		if err != nil {
			return nil, err
		}
		// Unlocking with CRLs on may have made a fresh one already.
		if fresh, err := ca.CurrentCRL(ctx, l.st, time.Now()); err != nil || fresh != nil {
			return fresh, err
		}
		return a.GenerateCRL(ctx)
	})
	if err != nil {
		return nil, err
	}
	return v.(*store.CRL), nil
}

// Backup implements Admin.
func (l *Local) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return l.st.Backup(ctx, w)
}

// TokenRequestFromAPI turns the wire request into ca's, parsing durations;
// defaultURL fills an empty CA URL.
func TokenRequestFromAPI(req api.TokenRequest, defaultURL string) (ca.TokenRequest, error) {
	tr := ca.TokenRequest{Kind: req.Kind, Name: req.Name, Role: req.Role, SANs: req.SANs, Groups: req.Groups, CAURL: req.CAURL, CreatedBy: req.By}
	if tr.CAURL == "" {
		tr.CAURL = defaultURL
	}
	var err error
	if req.CertTTL != "" {
		if tr.CertTTL, err = pki.ParseTTL(req.CertTTL); err != nil {
			return tr, fmt.Errorf("cert TTL: %v: %w", err, pki.ErrPolicy)
		}
	}
	if req.TTL != "" {
		if tr.TTL, err = pki.ParseTTL(req.TTL); err != nil {
			return tr, fmt.Errorf("token TTL: %v: %w", err, pki.ErrPolicy)
		}
	}
	return tr, nil
}

// PrecheckTokenRequest checks a token request without the CA, so bad
// input fails before a password is asked or the service is called.
func PrecheckTokenRequest(req api.TokenRequest) error {
	tr, err := TokenRequestFromAPI(req, "https://precheck.invalid")
	if err != nil {
		return err
	}
	tr.Roles = pki.AnyRole
	return ca.CheckTokenRequest(&tr)
}

// TokenInfo is the wire form of a token record.
func TokenInfo(t *store.Token) api.TokenInfo {
	out := api.TokenInfo{ID: t.ID, Kind: t.Kind, Name: t.Name, Role: t.Role, SANs: t.SANs, Groups: t.Groups, CreatedAt: t.CreatedAt,
		ExpiresAt: t.ExpiresAt, CreatedBy: t.CreatedBy, UsedAt: t.UsedAt, Serial: t.Serial}
	if t.CertTTL > 0 {
		out.CertTTL = pki.FormatTTL(t.CertTTL)
	}
	return out
}

// CreateTokens implements Admin.
func (l *Local) CreateTokens(ctx context.Context, reqs []api.TokenRequest) ([]api.TokenResponse, error) {
	if len(reqs) == 0 {
		return nil, fmt.Errorf("no token requested: %w", pki.ErrPolicy)
	}
	rec, err := l.st.CA(ctx)
	if err != nil {
		return nil, err
	}
	defURL := l.o.CAURL
	if defURL == "" {
		u, err := l.st.Setting(ctx, SettingURL)
		if err != nil {
			return nil, err
		}
		defURL = string(u)
	}
	trs := make([]ca.TokenRequest, len(reqs))
	for i, req := range reqs {
		if trs[i], err = TokenRequestFromAPI(req, defURL); err != nil {
			return nil, err
		}
		if trs[i].CAURL == "" {
			return nil, errors.New("no CA URL: pass --ca-url (dockca serve records its URL when it starts)")
		}
	}
	m, err := l.tokenMinter(ctx)
	if err != nil {
		return nil, err
	}
	toks, recs, err := ca.CreateTokens(ctx, l.st, m, trs)
	if err != nil {
		return nil, err
	}
	out := make([]api.TokenResponse, len(toks))
	for i := range toks {
		caURL, _ := pki.NormalizeCAURL(trs[i].CAURL)
		out[i] = api.TokenResponse{Token: toks[i], Info: TokenInfo(recs[i]), CAURL: caURL, RootFingerprint: rec.RootFingerprint}
	}
	return out, nil
}

// Tokens implements Admin.
func (l *Local) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	toks, err := l.st.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.TokenInfo, 0, len(toks))
	for _, t := range toks {
		out = append(out, TokenInfo(t))
	}
	return out, nil
}

// Check implements Admin. The password is asked for only to check the
// keys of an encrypted CA that is not unlocked already.
func (l *Local) Check(ctx context.Context) (*ca.CheckReport, error) {
	o := ca.CheckOptions{KeysChecked: l.o.KeysChecked, KeyProblems: l.o.KeyProblems}
	if o.KeysChecked == "" {
		if _, err := l.st.CA(ctx); err == nil {
			pw, err := l.password(ctx)
			if err != nil {
				return nil, err
			}
			o.Password = pw
		}
	}
	return ca.Check(ctx, l.st, o)
}

// Policy implements Admin.
func (l *Local) Policy(ctx context.Context) (*store.Policy, error) {
	return l.st.Policy(ctx)
}

// ErrInvalidPolicy is matched by a policy the plugin's compiler refuses.
var ErrInvalidPolicy = authz.ErrPolicy

// SetPolicy implements Admin.
func (l *Local) SetPolicy(ctx context.Context, yaml []byte, by string) (*store.Policy, error) {
	p, err := authz.LoadPolicy(bytes.NewReader(yaml))
	if err != nil {
		if !errors.Is(err, ErrInvalidPolicy) {
			err = fmt.Errorf("%w: %v", ErrInvalidPolicy, err)
		}
		return nil, err
	}
	rec := &store.Policy{YAML: yaml, Roles: p.Roles(), UpdatedBy: by}
	if err := l.st.SetPolicy(ctx, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// Close implements Admin.
func (l *Local) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.a != nil && l.o.Authority == nil {
		l.a.Close()
		l.a = nil
	}
	if l.o.OwnsStore {
		return l.st.Close()
	}
	return nil
}
