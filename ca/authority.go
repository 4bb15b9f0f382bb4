package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// Authority is an unlocked dockca CA: it can sign, revoke and publish CRLs.
type Authority struct {
	st           *store.Store
	rec          *store.CA
	root         *x509.Certificate
	intermediate *x509.Certificate
	trust        *Trust
	// older are the signers of the previous, still trusted intermediates,
	// by the intermediate's fingerprint: their CRLs (crl.go, IssuerCRL).
	older     map[string]*olderIssuer
	step      *authority.Authority
	signer    crypto.Signer // the intermediate's key, for CRLs
	actor     string
	crl       bool
	crlRounds crlRounds
	// audiences are the token audiences smallstep's configuration gives
	// the CA's names (VerifyToken).
	audiences provisioner.Audiences
}

// OpenOptions configure Open.
type OpenOptions struct {
	// Password decrypts the intermediate key (ignored for a CA created
	// with --no-password).
	Password []byte
	// Actor is recorded as the issuer of every certificate ("cli:root@host").
	Actor string
	// CRL lets the authority revoke and publish CRLs (GenerateCRL, and a
	// regeneration after each revocation). Commands that only issue leave
	// it off.
	CRL bool
	// DNSNames are the names the authority answers to; they set the audience
	// of one-time tokens. Default: localhost.
	DNSNames []string
}

// LoadCertificates returns the root and intermediate without unlocking any
// key; enough for fingerprints, chains and verification.
func LoadCertificates(ctx context.Context, st *store.Store) (rec *store.CA, root, intermediate *x509.Certificate, err error) {
	rec, err = st.CA(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if root, err = x509.ParseCertificate(rec.RootDER); err != nil {
		return nil, nil, nil, fmt.Errorf("parse root: %w", err)
	}
	if intermediate, err = x509.ParseCertificate(rec.IntermediateDER); err != nil {
		return nil, nil, nil, fmt.Errorf("parse intermediate: %w", err)
	}
	return rec, root, intermediate, nil
}

// Open unlocks the intermediate key and starts the embedded authority.
func Open(ctx context.Context, st *store.Store, o OpenOptions) (*Authority, error) {
	rec, trust, err := LoadTrust(ctx, st)
	if err != nil {
		return nil, err
	}
	root, inter := trust.Root, trust.Intermediate
	var pw []byte
	if rec.Encrypted {
		pw = o.Password
	}
	signer, err := DecryptKey(rec.IntermediateKey, pw)
	if err != nil {
		return nil, fmt.Errorf("unlock intermediate key: %w", err)
	}
	a := &Authority{st: st, rec: rec, root: root, intermediate: inter, trust: trust, signer: signer, actor: o.Actor, crl: o.CRL}
	if o.CRL {
		if a.older, err = olderIssuers(rec, pw); err != nil {
			return nil, err
		}
	}
	if a.actor == "" {
		a.actor = "dockca"
	}
	dnsNames := o.DNSNames
	if len(dnsNames) == 0 {
		dnsNames = []string{"localhost"}
	}
	cfg := &config.Config{
		DNSNames:        dnsNames,
		AuthorityConfig: &config.AuthConfig{},
	}
	if err := configureTokens(ctx, st, cfg); err != nil {
		return nil, err
	}
	a.audiences = cfg.GetAudiences()
	// smallstep's CRL generator stays off: it rebuilt the whole CRL at
	// every start and on every revocation, at a cost that grows with the
	// number of revocations. dockca makes its CRLs itself (crl.go).
	signingService, err := newSigningService(inter, signer)
	if err != nil {
		return nil, err
	}
	step, err := authority.NewEmbedded(
		authority.WithConfig(cfg),
		authority.WithX509RootCerts(root),
		authority.WithX509Signer(inter, signer),
		authority.WithX509CAService(signingService),
		authority.WithDatabase(st.AuthDB()),
		authority.WithQuietInit(),
	)
	if err != nil {
		return nil, fmt.Errorf("start authority: %w", err)
	}
	a.step = step
	if o.CRL {
		// A CRL must exist for clients to fetch; one that is current is
		// kept, so opening costs nothing that grows with revocations.
		current, err := CurrentCRLHeader(ctx, st, time.Now())
		if err == nil && current != nil && len(rec.Previous) > 0 {
			// After a rotation the stored CRL may be the old
			// intermediate's: the current issuer's is made now.
			var signedBy []byte
			if signedBy, err = st.Setting(ctx, settingCRLIssuer); string(signedBy) != pki.Fingerprint(inter) {
				current = nil
			}
		}
		if err == nil && current == nil {
			_, err = a.GenerateCRL(ctx)
		}
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("start authority: %w", err)
		}
	}
	return a, nil
}

// Outdated reports whether the CA record in the store is no longer the one
// a was opened from: a rotation (intermediate, root or finish) made
// elsewhere, by another replica's host on a shared store. A long-running
// holder (dockca serve) then opens the authority again; until it does,
// what a issues is still valid, since every rotation keeps the previous
// generation trusted.
func (a *Authority) Outdated(ctx context.Context) (bool, error) {
	rec, err := a.st.CA(ctx)
	if err != nil {
		return false, err
	}
	return !reflect.DeepEqual(rec, a.rec), nil
}

// Close stops the embedded authority's background work. The store stays
// open: its owner closes it.
func (a *Authority) Close() error {
	if a == nil || a.step == nil {
		return nil
	}
	// smallstep's Shutdown panics when called twice.
	step := a.step
	a.step = nil
	return step.Shutdown()
}

// Root returns the root certificate.
func (a *Authority) Root() *x509.Certificate { return a.root }

// Trust returns the CA's generations as verifiers see them.
func (a *Authority) Trust() *Trust { return a.trust }

// Intermediate returns the intermediate that signs every leaf.
func (a *Authority) Intermediate() *x509.Certificate { return a.intermediate }

// Store returns the store the authority persists to.
func (a *Authority) Store() *store.Store { return a.st }

// Step exposes the embedded smallstep authority (for token provisioners).
func (a *Authority) Step() *authority.Authority { return a.step }

// record turns a just-signed leaf of kind into dockca's record, with its
// provenance (sign stores it before the certificate is handed out).
func (a *Authority) record(leaf *x509.Certificate, kind pki.Kind, prov Provenance) *store.Certificate {
	rec := &store.Certificate{
		Serial:      pki.FormatSerial(leaf.SerialNumber),
		Name:        leaf.Subject.CommonName,
		Kind:        kind,
		Role:        pki.RoleOf(leaf),
		SANs:        pki.SANStrings(leaf),
		NotBefore:   leaf.NotBefore.UTC(),
		NotAfter:    leaf.NotAfter.UTC(),
		IssuedAt:    time.Now().UTC(),
		IssuedBy:    prov.Actor,
		Fingerprint: pki.Fingerprint(leaf),
		DER:         leaf.Raw,
		TokenID:     prov.TokenID,
		RenewedFrom: prov.RenewedFrom,
		Holder:      prov.Holder,
	}
	switch kind {
	case pki.KindClient:
		rec.Groups = pki.ScopeOf(leaf)
	case pki.KindDaemon:
		rec.Groups = pki.GroupsOf(leaf)
	}
	if kind != pki.KindClient {
		rec.Role = ""
	}
	return rec
}

// VerifyChain checks that leaf chains to this CA's root for usage at now.
func VerifyChain(root, intermediate, leaf *x509.Certificate, usage x509.ExtKeyUsage, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inters := x509.NewCertPool()
	if intermediate != nil {
		inters.AddCert(intermediate)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: now})
	return err
}

var errNotOpen = errors.New("the authority is not unlocked")
