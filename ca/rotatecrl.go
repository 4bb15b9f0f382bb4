package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// One CRL per issuer. The stored CRL is the current intermediate's; the
// CRL of an earlier, still trusted intermediate is made on demand with its
// key and kept for a while. Every issuer's CRL lists every revocation: a
// serial is unique across generations (159 random bits, and the store keys
// certificates by serial), so listing one an issuer never signed revokes
// nothing else, and a verifier holding any one live issuer's CRL knows
// every revocation, whichever intermediate signed the certificate.

// ErrUnknownIssuer means a CRL was asked for an issuer that is not a live
// intermediate of this CA.
var ErrUnknownIssuer = errors.New("not an issuer of this CA")

// olderCRLTTL is how long an older issuer's CRL is served from memory when
// no revocation happened meanwhile.
const olderCRLTTL = time.Hour

type olderIssuer struct {
	cert *x509.Certificate
	// The key is decrypted at the first request for this issuer's CRL:
	// each decryption costs a password derivation, which a command that
	// only revokes should not pay for every earlier generation.
	keyPEM, password []byte
	generation       int
	signer           crypto.Signer

	mu  sync.Mutex
	der []byte
	seq uint64
	at  time.Time
}

// olderIssuers lists the previous intermediates by the fingerprints of
// the intermediate and of its cross-signed twin; IssuerCRL decrypts a key
// when first asked (with a copy of the password).
func olderIssuers(rec *store.CA, pw []byte) (map[string]*olderIssuer, error) {
	out := map[string]*olderIssuer{}
	for _, g := range rec.Previous {
		// Retired generations too: a remote plugin that has not been
		// restarted since the rotation still fetches its issuer's CRL.
		inter, err := x509.ParseCertificate(g.IntermediateDER)
		if err != nil {
			return nil, fmt.Errorf("parse generation %d intermediate: %w", g.Generation, err)
		}
		o := &olderIssuer{cert: inter, keyPEM: g.IntermediateKey, password: bytes.Clone(pw), generation: g.Generation}
		out[pki.Fingerprint(inter)] = o
		if len(g.CrossDER) > 0 {
			if cross, err := x509.ParseCertificate(g.CrossDER); err == nil {
				out[pki.Fingerprint(cross)] = o
			}
		}
	}
	return out, nil
}

// IsCurrentIssuer reports whether fingerprint names the current
// intermediate (or its cross-signed twin), whose CRL is the stored one.
func (a *Authority) IsCurrentIssuer(fingerprint string) bool {
	fingerprint = pki.NormalizeFingerprint(fingerprint)
	for _, c := range a.trust.Chain {
		if pki.Fingerprint(c) == fingerprint {
			return true
		}
	}
	return false
}

// IssuerCRL returns the DER CRL of an earlier intermediate
// named by its SHA-256 fingerprint (the current one's is CurrentCRL's).
func (a *Authority) IssuerCRL(ctx context.Context, fingerprint string) ([]byte, error) {
	if a.step == nil || !a.crl {
		return nil, errNotOpen
	}
	o := a.older[pki.NormalizeFingerprint(fingerprint)]
	if o == nil {
		return nil, fmt.Errorf("CRL of %q: %w", fingerprint, ErrUnknownIssuer)
	}
	seq, err := a.st.RevocationSeq(ctx)
	if err != nil {
		return nil, fmt.Errorf("CRL of %q: %w", fingerprint, err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.der != nil && o.seq == seq && now.Sub(o.at) < olderCRLTTL {
		return o.der, nil
	}
	if o.signer == nil {
		if o.signer, err = DecryptKey(o.keyPEM, o.password); err != nil {
			return nil, fmt.Errorf("unlock generation %d intermediate key: %w", o.generation, err)
		}
	}
	number := int64(0)
	if h, err := a.st.CRLHeader(ctx); err == nil {
		number = h.Number
	}
	entries, seq, err := crlEntries(ctx, a.st, now)
	if err != nil {
		return nil, fmt.Errorf("CRL of %q: %w", fingerprint, err)
	}
	der, err := signCRL(o.cert, o.signer, number, now, now.Add(CRLValidity), entries.Bytes())
	if err != nil {
		return nil, fmt.Errorf("CRL of %q: %w", fingerprint, err)
	}
	o.der, o.seq, o.at = der, seq, now
	return der, nil
}

// settingCRLIssuer records which intermediate signed the stored CRL, once
// the CA has rotated: Open makes a new CRL when it is not the current one
// (a CRL kept from before the rotation, or a crash between the rotation
// and the first CRL after it).
const settingCRLIssuer = "crl_issuer_sha256"

// noteCRLIssuer records the current intermediate as the stored CRL's
// signer; nothing is written for a CA that never rotated, nor when the
// record already says so.
func (a *Authority) noteCRLIssuer(ctx context.Context) error {
	if len(a.rec.Previous) == 0 {
		return nil
	}
	fp := pki.Fingerprint(a.intermediate)
	cur, err := a.st.Setting(ctx, settingCRLIssuer)
	if err != nil || string(cur) == fp {
		return err
	}
	return a.st.SetSetting(ctx, settingCRLIssuer, []byte(fp))
}
