package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/jose"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// The issuance paths of `dockca serve`: a CSR with a one-time token, a
// renewal over mutual TLS, revocation by the holder or with an admin token,
// and the service's own certificate.

var (
	// ErrNotRenewable means a presented certificate is not one this CA
	// issued and still vouches for (foreign, expired or unknown).
	ErrNotRenewable = errors.New("the certificate was not issued by this CA or is no longer valid")
	// ErrRevoked means the presented certificate has been revoked.
	ErrRevoked = errors.New("the certificate has been revoked")
)

// VerifyToken checks a token against the token provisioner's key:
// signature, issuer, audience for method (the audiences smallstep's
// configuration gives the CA's names), nbf/exp with a minute of leeway,
// subject and ID, without spending it; the caller spends it together with
// what it buys. These are the checks of smallstep's JWK provisioner, made
// here on one parse of the token: smallstep's Authorize parsed it three
// times more and built sign options dockca does not use, a fifth of a
// signing's time under load.
func (a *Authority) VerifyToken(ctx context.Context, tok string, method provisioner.Method) (*pki.TokenClaims, error) {
	if a.step == nil {
		return nil, errNotOpen
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return nil, fmt.Errorf("%w: no token", pki.ErrTokenInvalid)
	}
	if len(tok) > 8192 {
		return nil, fmt.Errorf("%w: token too long", pki.ErrTokenInvalid)
	}
	jwt, err := jose.ParseSigned(tok)
	if err != nil || len(jwt.Headers) != 1 {
		return nil, fmt.Errorf("%w: malformed token", pki.ErrTokenInvalid)
	}
	p, perr := a.step.LoadProvisionerByName(pki.TokenIssuer)
	jwk, isJWK := p.(*provisioner.JWK)
	if perr != nil || !isJWK || jwt.Headers[0].KeyID != jwk.Key.KeyID {
		return nil, fmt.Errorf("%w: the token was not signed by this CA", pki.ErrTokenInvalid)
	}
	var c pki.TokenClaims
	if err := jwt.Claims(jwk.Key, &c); err != nil {
		return nil, fmt.Errorf("%w: the token was not signed by this CA", pki.ErrTokenInvalid)
	}
	err = c.ValidateWithLeeway(jose.Expected{Issuer: pki.TokenIssuer, Time: time.Now().UTC()}, time.Minute)
	switch {
	case errors.Is(err, jose.ErrExpired):
		return nil, fmt.Errorf("%w: the token has expired", pki.ErrTokenInvalid)
	case errors.Is(err, jose.ErrNotValidYet):
		return nil, fmt.Errorf("%w: the token is not valid yet", pki.ErrTokenInvalid)
	case errors.Is(err, jose.ErrInvalidIssuer):
		return nil, fmt.Errorf("%w: the token was not signed by this CA", pki.ErrTokenInvalid)
	case err != nil:
		return nil, fmt.Errorf("%w: the token does not verify", pki.ErrTokenInvalid)
	}
	var want []string
	switch method {
	case provisioner.SignMethod:
		want = append(want, a.audiences.Sign...)
		want = append(want, keyAudience(jwk.Key.KeyID, "/1.0/sign"))
	case provisioner.RevokeMethod:
		want = append(want, a.audiences.Revoke...)
		want = append(want, keyAudience(jwk.Key.KeyID, "/1.0/revoke"))
	}
	if !matchesAudience(c.Audience, want) {
		return nil, fmt.Errorf("%w: the token is for another CA address or another operation", pki.ErrTokenInvalid)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: the token does not verify", pki.ErrTokenInvalid)
	}
	if c.ID == "" {
		return nil, fmt.Errorf("%w: no token ID (jti)", pki.ErrTokenInvalid)
	}
	return &c, nil
}

// matchesAudience is smallstep's audience rule: one of the token's
// audiences equals one of want, ports aside.
func matchesAudience(have, want []string) bool {
	for _, w := range want {
		for _, h := range have {
			if h == w || stripPort(h) == stripPort(w) {
				return true
			}
		}
	}
	return false
}

func stripPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Host = u.Hostname()
	return u.String()
}

// IssueWithToken signs csr under the binding of a one-time token. The
// CSR's names must be the token's; the certificate gets dockca's profile
// for the token's kind, name, role and lifetime, and the token is spent in
// the transaction that stores the certificate. holder is recorded as where
// it went (store.Certificate.Holder).
func (a *Authority) IssueWithToken(ctx context.Context, tok string, csr *x509.CertificateRequest, holder string) (*Issued, error) {
	c, err := a.VerifyToken(ctx, tok, provisioner.SignMethod)
	if err != nil {
		return nil, err
	}
	kind, err := pki.ParseKind(c.Dockca.Kind)
	if err != nil {
		return nil, fmt.Errorf("%w: this token does not enroll certificates (kind %q)", pki.ErrTokenInvalid, c.Dockca.Kind)
	}
	// A precheck, to save the signing for a spent token: PutCertificate
	// spends it in its transaction, so a stale read here cannot let a
	// token buy two certificates.
	if used, err := a.st.TokenUsed(store.StaleOK(ctx), c.ID); err != nil {
		return nil, err
	} else if used != nil {
		return nil, ErrTokenUsed
	}
	if csr == nil {
		return nil, fmt.Errorf("%w: a CSR is required", ErrBadCSR)
	}
	r := Request{Kind: kind, Name: c.Subject, Role: c.Dockca.Role, TTL: time.Duration(c.Dockca.TTL) * time.Second, CSR: csr, Groups: c.Dockca.Groups}
	allowed := map[string]bool{}
	if kind == pki.KindDaemon {
		for _, s := range append([]string{c.Subject}, c.SANs...) {
			san, err := pki.ParseSAN(s)
			if err != nil {
				return nil, fmt.Errorf("%w: bad SAN claim", pki.ErrTokenInvalid)
			}
			allowed[san.String()] = true
			if s != c.Subject {
				r.SANs = append(r.SANs, s)
			}
		}
		if err := csrNamesWithin(csr, allowed); err != nil {
			return nil, err
		}
	}
	// The actor is a description for ls and show ("token:" and the ID);
	// the store spends the token by its typed ID, never by parsing this.
	iss, err := a.issue(ctx, r, issueExtra{prov: Provenance{Actor: "token:" + c.ID, TokenID: c.ID, Holder: holder}})
	if errors.Is(err, store.ErrTokenUsed) {
		return nil, ErrTokenUsed
	}
	return iss, err
}

// csrNamesWithin refuses a CSR asking for a name outside allowed.
func csrNamesWithin(csr *x509.CertificateRequest, allowed map[string]bool) error {
	for _, n := range pki.CSRNames(csr) {
		san, err := pki.ParseSAN(n)
		if err != nil {
			return fmt.Errorf("the CSR asks for %q: %w", n, err)
		}
		if !allowed[san.String()] {
			return fmt.Errorf("the CSR asks for %q, which this authorization does not cover: %w", n, pki.ErrPolicy)
		}
	}
	return nil
}

// Holder checks that cert, as presented over mutual TLS, is a valid,
// unrevoked certificate of this CA and returns its record.
func (a *Authority) Holder(ctx context.Context, cert *x509.Certificate, now time.Time) (*store.Certificate, error) {
	if cert == nil {
		return nil, fmt.Errorf("%w: no client certificate", ErrNotRenewable)
	}
	if err := a.trust.Verify(cert, x509.ExtKeyUsageAny, now); err != nil {
		return nil, ErrNotRenewable
	}
	rec, err := a.st.Certificate(ctx, cert.SerialNumber)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotRenewable
	}
	if err != nil {
		return nil, err
	}
	if rec.Fingerprint != pki.Fingerprint(cert) || (rec.Kind != pki.KindClient && rec.Kind != pki.KindDaemon) {
		return nil, ErrNotRenewable
	}
	if rec.Revocation != nil {
		return nil, ErrRevoked
	}
	return rec, nil
}

// Renew issues a new certificate with the identity, kind, role, names and
// lifetime of the presented one. With csr the key changes (its names must
// be within the old certificate's); without, the old public key is
// certified again. holder is recorded as where the renewal went; empty
// keeps the presented certificate's.
func (a *Authority) Renew(ctx context.Context, cert *x509.Certificate, csr *x509.CertificateRequest, holder string) (*Issued, error) {
	rec, err := a.Holder(ctx, cert, time.Now())
	if err != nil {
		return nil, err
	}
	ttl := rec.NotAfter.Sub(rec.NotBefore) - clockSkew
	ttl = min(max(ttl, pki.MinTTL), pki.MaxTTL(rec.Kind))
	r := Request{Kind: rec.Kind, Name: rec.Name, TTL: ttl.Round(time.Second), Groups: rec.Groups}
	if rec.Kind == pki.KindClient {
		r.Role = rec.Role
	} else {
		for _, s := range rec.SANs {
			if s != rec.Name {
				r.SANs = append(r.SANs, s)
			}
		}
	}
	if holder == "" {
		holder = rec.Holder
	}
	x := issueExtra{prov: Provenance{Actor: "renew:" + rec.Serial, RenewedFrom: rec.Serial, Holder: holder}}
	if csr != nil {
		if rec.Kind == pki.KindDaemon {
			allowed := map[string]bool{}
			for _, s := range rec.SANs {
				allowed[s] = true
			}
			if err := csrNamesWithin(csr, allowed); err != nil {
				return nil, err
			}
		}
		r.CSR = csr
	} else {
		// Without a CSR the old public key is certified again.
		x.pubKey = cert.PublicKey
	}
	return a.issue(ctx, r, x)
}

// RevokeHolder revokes the certificate presented over mutual TLS.
func (a *Authority) RevokeHolder(ctx context.Context, cert *x509.Certificate, reason pki.Reason) (*RevokeResult, error) {
	if _, err := a.Holder(ctx, cert, time.Now()); err != nil {
		return nil, err
	}
	return a.Revoke(ctx, cert.SerialNumber, reason)
}

// RevokeWithToken revokes the serial an admin revoke token names. The
// token is spent once the revocation is recorded, so a request that fails
// first (an unknown serial, a crash) leaves it usable; a concurrent replay
// only repeats an idempotent revocation.
func (a *Authority) RevokeWithToken(ctx context.Context, tok string, reason pki.Reason) (*RevokeResult, error) {
	c, err := a.VerifyToken(ctx, tok, provisioner.RevokeMethod)
	if err != nil {
		return nil, err
	}
	if c.Dockca.Kind != pki.TokenKindRevoke {
		return nil, fmt.Errorf("%w: not a revoke token", pki.ErrTokenInvalid)
	}
	serial, err := pki.ParseSerial(c.Subject)
	if err != nil {
		return nil, fmt.Errorf("%w: bad serial claim", pki.ErrTokenInvalid)
	}
	if used, err := a.st.TokenUsed(ctx, c.ID); err != nil {
		return nil, err
	} else if used != nil {
		return nil, ErrTokenUsed
	}
	res, err := a.Revoke(ctx, serial, reason)
	if err != nil {
		return nil, err
	}
	if err := a.st.MarkTokenUsed(ctx, c.ID, ""); err != nil && !errors.Is(err, store.ErrTokenUsed) {
		return nil, err
	}
	return res, nil
}

// IssueService issues the service's own HTTPS certificate (a server
// profile, recorded with kind service) for names; the key is generated
// here, as it never leaves the service.
func (a *Authority) IssueService(ctx context.Context, names []string, ttl time.Duration) (*Issued, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("service certificate: no names: %w", pki.ErrPolicy)
	}
	return a.issue(ctx, Request{Kind: pki.KindDaemon, Name: names[0], SANs: names[1:], TTL: ttl},
		issueExtra{kind: pki.KindService, prov: Provenance{Actor: "serve"}})
}
