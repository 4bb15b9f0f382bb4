package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// Request asks for one certificate.
type Request struct {
	Kind pki.Kind
	// Name is the client name or the daemon's host (CN and first SAN).
	// With a CSR it may be empty: the CSR's names are used.
	Name string
	// Role of a client certificate; empty means admin.
	Role pki.Role
	// SANs are extra daemon names (DNS or IP).
	SANs []string
	// Groups are a daemon's groups, or a client's scope: the groups whose
	// daemons it may reach (none: every daemon). See pki/scope.go.
	Groups []string
	// TTL; zero means the kind's default.
	TTL time.Duration
	// CSR, when set, is signed as is (its key never reaches the CA);
	// otherwise dockca generates a key of KeyType (default ec-p256).
	CSR     *x509.CertificateRequest
	KeyType pki.KeyType
	// RenewedFrom, when set, is the serial of the certificate this one
	// replaces (same name and kind): it is recorded as the predecessor, so
	// it shows as superseded, and the issuance fails if it was revoked.
	RenewedFrom string
	// Actor, when set, is recorded as the issuer instead of the
	// authority's own actor (an admin command run through the service).
	Actor string
	// Holder is where the certificate goes, for the record (the folder
	// an admin command writes it to); see store.Certificate.Holder.
	Holder string
}

// Issued is a signed certificate with what a client needs to use it.
type Issued struct {
	Record *store.Certificate
	Leaf   *x509.Certificate
	// Chain is leaf then intermediate (then, during a root overlap, the
	// intermediate cross-signed by the old root): the cert.pem docker
	// expects.
	Chain []*x509.Certificate
	Root  *x509.Certificate
	// Roots is the trust bundle (ca.pem): Root, then during a root
	// overlap the old root.
	Roots []*x509.Certificate
	// Key is nil when the request carried a CSR.
	Key crypto.Signer
}

// RootsPEM is the ca.pem to write: every trusted root.
func (i *Issued) RootsPEM() []byte {
	if len(i.Roots) == 0 {
		return pki.PEMCert(i.Root)
	}
	return pki.PEMChain(i.Roots...)
}

// ChainPEM is the leaf followed by the intermediate.
func (i *Issued) ChainPEM() []byte { return pki.PEMChain(i.Chain...) }

// KeyPEM is the unencrypted private key, or nil for CSR issuance.
func (i *Issued) KeyPEM() ([]byte, error) {
	if i.Key == nil {
		return nil, nil
	}
	return pki.MarshalPrivateKey(i.Key)
}

// Provenance is where an issuance came from, carried as typed fields from
// the issuing call to the record the store writes: who asked, the one-time
// token it spends (the store spends it in the transaction that records the
// certificate) and the certificate it renews (the store refuses the
// renewal in that transaction if that one has been revoked meanwhile).
type Provenance struct {
	// Actor is recorded as the issuer (IssuedBy): "cli:root@host",
	// "socket:...", "serve", or a description of a service request.
	Actor string
	// TokenID is the ID (jti) of the one-time token spent, if any.
	TokenID string
	// RenewedFrom is the serial of the certificate renewed, if any.
	RenewedFrom string
	// Holder is where the certificate goes (store.Certificate.Holder).
	Holder string
}

// Normalized is a request after policy: the exact subject, names, role and
// validity the certificate will have.
type Normalized struct {
	Kind      pki.Kind
	Name      string
	Role      pki.Role
	SANs      []pki.SAN
	Groups    []string // sorted, without duplicates
	NotBefore time.Time
	NotAfter  time.Time
}

// Check applies the policy to r without signing anything; Issue calls it
// first, and the CLI can call it before it touches any file.
func (a *Authority) Check(r Request) (*Normalized, error) {
	// On etcd, from the nearest member: a policy change reaches issuance
	// within the milliseconds that member takes to apply it.
	roles, err := PolicyRoles(store.StaleOK(context.Background()), a.st)
	if err != nil {
		return nil, err
	}
	return check(r, a.intermediate, roles, time.Now())
}

// Precheck applies the policy without the CA (so without the check that
// the certificate would not outlive the intermediate): commands call it
// before asking for the CA password, so bad input fails fast.
func Precheck(r Request) error {
	_, err := PrecheckRequest(r)
	return err
}

// PrecheckRequest is Precheck returning the normalized request, so that a
// command knows the name it will issue for before it asks the CA. Any
// well-formed role passes: the CA checks it against its stored policy.
func PrecheckRequest(r Request) (*Normalized, error) {
	return check(r, nil, pki.AnyRole, time.Now())
}

// check applies the policy; roles are the stored policy's roles beside the
// built-in ones. It is where a CSR's signature is verified, once per
// issuance (the service's request decoder only parses it).
func check(r Request, issuer *x509.Certificate, roles []pki.Role, now time.Time) (*Normalized, error) {
	if _, err := pki.ParseKind(string(r.Kind)); err != nil {
		return nil, err
	}
	n := &Normalized{Kind: r.Kind, Name: r.Name}
	if r.CSR != nil {
		if err := r.CSR.CheckSignature(); err != nil {
			return nil, fmt.Errorf("%w: signature does not verify: %v", ErrBadCSR, err)
		}
		if err := pki.CheckPublicKey(r.CSR.PublicKey); err != nil {
			return nil, err
		}
		if len(r.CSR.EmailAddresses) > 0 || len(r.CSR.URIs) > 0 {
			return nil, fmt.Errorf("the CSR asks for e-mail or URI names, which dockca does not issue: %w", pki.ErrPolicy)
		}
	}
	switch r.Kind {
	case pki.KindClient:
		if r.CSR != nil {
			if len(r.CSR.DNSNames) > 0 || len(r.CSR.IPAddresses) > 0 {
				return nil, fmt.Errorf("client certificates carry no host names, but the CSR asks for some: %w", pki.ErrPolicy)
			}
			if n.Name == "" {
				n.Name = r.CSR.Subject.CommonName
			} else if n.Name != r.CSR.Subject.CommonName {
				return nil, fmt.Errorf("the CSR names %q, not %q: %w", r.CSR.Subject.CommonName, n.Name, pki.ErrPolicy)
			}
		}
		if err := pki.CheckClientName(n.Name); err != nil {
			return nil, err
		}
		n.Role = r.Role
		if n.Role == "" {
			n.Role = pki.RoleAdmin
		}
		if err := pki.CheckRole(n.Role, roles...); err != nil {
			return nil, err
		}
		if len(r.SANs) > 0 {
			return nil, fmt.Errorf("client certificates carry no host names: %w", pki.ErrPolicy)
		}
	case pki.KindDaemon:
		if r.Role != "" {
			return nil, fmt.Errorf("daemon certificates carry no role: %w", pki.ErrPolicy)
		}
		extra := append([]string(nil), r.SANs...)
		if r.CSR != nil {
			csrNames := pki.CSRNames(r.CSR)
			if n.Name == "" {
				n.Name = r.CSR.Subject.CommonName
				if n.Name == "" && len(csrNames) > 0 {
					n.Name = csrNames[0]
				}
			} else if cn := r.CSR.Subject.CommonName; cn != "" && cn != n.Name {
				return nil, fmt.Errorf("the CSR names %q, not %q: %w", cn, n.Name, pki.ErrPolicy)
			}
			extra = append(extra, csrNames...)
		}
		if n.Name == "" {
			return nil, fmt.Errorf("the daemon host name is empty: %w", pki.ErrPolicy)
		}
		sans, err := pki.DaemonSANs(n.Name, extra)
		if err != nil {
			return nil, err
		}
		n.SANs = sans
		n.Name = sans[0].String()
	}
	groups, err := pki.NormalizeGroups(r.Groups)
	if err != nil {
		return nil, err
	}
	n.Groups = groups
	ttl, err := pki.TTLFor(r.Kind, r.TTL)
	if err != nil {
		return nil, err
	}
	n.NotBefore = now.Add(-clockSkew).UTC().Truncate(time.Second)
	n.NotAfter = now.Add(ttl).UTC().Truncate(time.Second)
	if issuer != nil && n.NotAfter.After(issuer.NotAfter) {
		return nil, fmt.Errorf("a %s certificate would outlive the intermediate CA, which expires %s: %w",
			pki.FormatTTL(ttl), issuer.NotAfter.UTC().Format(time.RFC3339), pki.ErrPolicy)
	}
	return n, nil
}

// Issue applies the policy, signs and stores one certificate. The store
// write happens inside the signing call, in one transaction: either the
// certificate exists and is recorded, or neither.
func (a *Authority) Issue(ctx context.Context, r Request) (*Issued, error) {
	return a.issue(ctx, r, issueExtra{})
}

// issueExtra is what the service's issuance paths (remote.go) add to a
// plain Issue: the provenance to record, the kind to record, and a public
// key to certify instead of the CSR's.
type issueExtra struct {
	prov   Provenance
	kind   pki.Kind
	pubKey crypto.PublicKey
}

func (a *Authority) issue(ctx context.Context, r Request, x issueExtra) (*Issued, error) {
	if a.step == nil {
		return nil, errNotOpen
	}
	n, err := a.Check(r)
	if err != nil {
		return nil, err
	}
	prov, kind := x.prov, n.Kind
	if prov.Actor == "" {
		prov.Actor = r.Actor
	}
	if prov.Actor == "" {
		prov.Actor = a.actor
	}
	if prov.Holder == "" {
		prov.Holder = pki.HolderLabel(r.Holder)
	}
	if r.RenewedFrom != "" {
		if err := a.checkPredecessor(ctx, r.RenewedFrom, n); err != nil {
			return nil, err
		}
		prov.RenewedFrom = r.RenewedFrom
	}
	if x.kind != "" {
		kind = x.kind
	}
	var key crypto.Signer
	pub := x.pubKey
	switch {
	case pub != nil:
	case r.CSR != nil:
		pub = r.CSR.PublicKey
	default:
		kt := r.KeyType
		if kt == "" {
			kt = pki.KeyECP256
		}
		if key, err = pki.GenerateKey(kt); err != nil {
			return nil, err
		}
		pub = key.Public()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	leaf, rec, err := a.sign(ctx, n, pub, kind, prov)
	if err != nil {
		return nil, err
	}
	return &Issued{Record: rec, Leaf: leaf, Chain: append([]*x509.Certificate{leaf}, a.trust.Chain...), Root: a.root, Roots: a.trust.Roots, Key: key}, nil
}

// checkPredecessor makes sure a renewal names a certificate of the same
// name and kind as its predecessor.
func (a *Authority) checkPredecessor(ctx context.Context, from string, n *Normalized) error {
	sn, err := pki.ParseSerial(from)
	if err != nil {
		return fmt.Errorf("renewal of %q: %w", from, err)
	}
	rec, err := a.st.Certificate(ctx, sn)
	if err != nil {
		return fmt.Errorf("renewal: %w", err)
	}
	if rec.Name != n.Name || rec.Kind != n.Kind {
		return fmt.Errorf("renewal of %s: it is the %s certificate of %q, not of %q", rec.Serial, rec.Kind, rec.Name, n.Name)
	}
	if rec.Revocation != nil {
		return ErrRevoked
	}
	return nil
}

// ParseCSR reads a PEM or DER certificate request and checks its signature.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	csr, err := DecodeCSR(b)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify", ErrBadCSR)
	}
	return csr, nil
}

// DecodeCSR reads a PEM or DER certificate request without checking its
// signature. It is for requests that go straight to Issue, IssueWithToken
// or Renew, whose policy check verifies the signature (and answers
// ErrBadCSR) before anything is signed or stored; checking it here too
// would cost one more ECDSA verification per request.
func DecodeCSR(b []byte) (*x509.CertificateRequest, error) {
	der := b
	if blk := pki.PEMBlock(b, "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"); blk != nil {
		der = blk
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	return csr, nil
}
