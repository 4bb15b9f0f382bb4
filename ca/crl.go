package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/dockca/dockca/store"
)

// dockca makes its CRLs itself rather than through smallstep's generator,
// which decodes every revocation record, converts each serial to decimal
// and back, and has x509.CreateRevocationList marshal the entries by
// reflection: 1.7 s for 100,000 revocations, and run again on every
// revocation and at every start. Here the entries come from the store's
// compact CRL index in one cursor pass, are DER-encoded by hand, and are
// spliced into a CRL that x509.CreateRevocationList built without entries
// (so the version, signature algorithm, issuer, times and extensions are
// exactly the standard library's). The result is one the standard library
// would have produced for the same entries.

const (
	// CRLValidity is how far ahead of thisUpdate a CRL's nextUpdate is.
	CRLValidity = 24 * time.Hour
	// crlKeepExpired is how long after its certificate expired a
	// revocation is still listed (smallstep's rule, kept).
	crlKeepExpired = time.Hour
)

var oidReasonCode = asn1.ObjectIdentifier{2, 5, 29, 21}

// crlRounds makes revocations that arrive together share one CRL
// regeneration, without ever handing a caller a CRL that was started
// before its call: callers that arrive while a generation runs wait for
// the next one, which they then all share.
type crlRounds struct {
	mu      sync.Mutex
	running bool
	next    *crlRound
}

type crlRound struct {
	done chan struct{}
	crl  *store.CRL
	err  error
}

func (c *crlRounds) do(gen func() (*store.CRL, error)) (*store.CRL, error) {
	c.mu.Lock()
	if c.next == nil {
		c.next = &crlRound{done: make(chan struct{})}
	}
	r := c.next
	if c.running {
		c.mu.Unlock()
		<-r.done
		return r.crl, r.err
	}
	c.running = true
	c.next = nil
	c.mu.Unlock()
	c.run(r, gen)
	return r.crl, r.err
}

// run generates for r, then starts the round that queued meanwhile (in
// the background, so this caller is not held by later arrivals).
func (c *crlRounds) run(r *crlRound, gen func() (*store.CRL, error)) {
	r.crl, r.err = gen()
	close(r.done)
	c.mu.Lock()
	next := c.next
	c.next = nil
	if next == nil {
		c.running = false
	}
	c.mu.Unlock()
	if next != nil {
		go c.run(next, gen)
	}
}

// GenerateCRL signs and stores a new CRL with the next CRL number, listing
// every revocation recorded before the call. Concurrent calls share
// generations (see crlRounds).
func (a *Authority) GenerateCRL(ctx context.Context) (*store.CRL, error) {
	if a.step == nil || !a.crl {
		return nil, errNotOpen
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A shared generation must not fail because the caller that happened
	// to run it went away.
	bg := context.WithoutCancel(ctx)
	return a.crlRounds.do(func() (*store.CRL, error) { return a.generateCRL(bg) })
}

// generateCRL makes and stores the next CRL. Replicas on one etcd store
// may generate at the same moment: the store keeps CRL numbers strictly
// increasing, so the loser reads the winner's CRL and hands that out if it
// covers every revocation the loser saw, and otherwise tries again with
// the next number.
func (a *Authority) generateCRL(ctx context.Context) (*store.CRL, error) {
	for attempt := 0; ; attempt++ {
		crl, seq, err := a.generateCRLOnce(ctx)
		if !errors.Is(err, store.ErrCRLNumber) || attempt >= 8 {
			return crl, err
		}
		if stored, rerr := a.st.CRL(ctx); rerr == nil && stored.RevocationSeq >= seq {
			return stored, nil
		}
	}
}

func (a *Authority) generateCRLOnce(ctx context.Context) (*store.CRL, uint64, error) {
	now := time.Now().UTC().Truncate(time.Second)
	number := int64(0)
	prev, err := a.st.CRLHeader(ctx)
	switch {
	case err == nil:
		number = prev.Number + 1
	case !errors.Is(err, store.ErrNotFound):
		return nil, 0, fmt.Errorf("generate crl: %w", err)
	}
	entries, seq, err := crlEntries(ctx, a.st, now)
	if err != nil {
		return nil, 0, fmt.Errorf("generate crl: %w", err)
	}
	der, err := signCRL(a.intermediate, a.signer, number, now, now.Add(CRLValidity), entries.Bytes())
	if err != nil {
		return nil, 0, fmt.Errorf("generate crl: %w", err)
	}
	crl := &store.CRL{Number: number, ThisUpdate: now, NextUpdate: now.Add(CRLValidity), Duration: CRLValidity, DER: der, RevocationSeq: seq}
	if err := a.st.PutCRL(ctx, crl); err != nil {
		return nil, seq, err
	}
	if err := a.noteCRLIssuer(ctx); err != nil {
		return nil, seq, fmt.Errorf("generate crl: %w", err)
	}
	return crl, seq, nil
}

// crlEntries encodes the revocations a CRL made at now lists.
func crlEntries(ctx context.Context, st *store.Store, now time.Time) (*bytes.Buffer, uint64, error) {
	var entries bytes.Buffer
	keepAfter := now.Add(-crlKeepExpired)
	seq, err := st.ScanRevoked(ctx, func(e store.RevokedEntry) error {
		if !e.ExpiresAt.IsZero() && e.ExpiresAt.Before(keepAfter) {
			return nil
		}
		appendCRLEntry(&entries, e)
		return nil
	})
	return &entries, seq, err
}

// appendCRLEntry appends one revokedCertificates entry (RFC 5280 5.1):
// SEQUENCE { serial INTEGER, revocationDate Time, [extensions] }, with the
// reasonCode extension when the reason is not unspecified, as
// x509.CreateRevocationList writes it. It is written by hand, without a
// builder, because it runs once per revocation on every CRL.
func appendCRLEntry(out *bytes.Buffer, e store.RevokedEntry) {
	serial := bytes.TrimLeft(e.Serial, "\x00")
	pad := len(serial) == 0 || serial[0]&0x80 != 0
	var tmp [64]byte
	body := tmp[:0]
	body = append(body, 0x02, byte(len(serial)+b2i(pad)))
	if pad {
		body = append(body, 0)
	}
	body = append(body, serial...)
	body = appendTime(body, e.RevokedAt)
	if e.ReasonCode != 0 {
		// SEQUENCE { SEQUENCE { OID 2.5.29.21, OCTET STRING { ENUMERATED code } } }
		body = append(body, 0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, byte(e.ReasonCode))
	}
	if len(body) > 127 || len(serial) > 100 {
		// Never for dockca's serials; the general encoder handles the rest.
		appendCRLEntryLong(out, serial, pad, e)
		return
	}
	out.WriteByte(0x30)
	out.WriteByte(byte(len(body)))
	out.Write(body)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func appendCRLEntryLong(out *bytes.Buffer, serial []byte, pad bool, e store.RevokedEntry) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) {
			if pad {
				b.AddUint8(0)
			}
			b.AddBytes(serial)
		})
		b.AddBytes(appendTime(nil, e.RevokedAt))
		if e.ReasonCode != 0 {
			b.AddBytes([]byte{0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, byte(e.ReasonCode)})
		}
	})
	out.Write(b.BytesOrPanic())
}

// appendTime writes UTCTime for 1950-2049 and GeneralizedTime otherwise
// (RFC 5280 5.1.2.4), as encoding/asn1 does for CRL times.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		b = append(b, 0x17, 13)
		return t.AppendFormat(b, "060102150405Z")
	}
	b = append(b, 0x18, 15)
	return t.AppendFormat(b, "20060102150405Z")
}

// signCRL builds a CRL for the given DER-encoded revokedCertificates
// entries: the standard library makes and signs it without entries, the
// entries go in after nextUpdate, and the new TBSCertList is signed with
// the same algorithm.
func signCRL(issuer *x509.Certificate, signer crypto.Signer, number int64, thisUpdate, nextUpdate time.Time, entries []byte) ([]byte, error) {
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	empty, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, signer)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return empty, nil
	}
	// CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }
	in := cryptobyte.String(empty)
	var list, tbs, sigAlg cryptobyte.String
	if !in.ReadASN1(&list, cbasn1.SEQUENCE) || !list.ReadASN1Element(&tbs, cbasn1.SEQUENCE) || !list.ReadASN1Element(&sigAlg, cbasn1.SEQUENCE) {
		return nil, errors.New("unexpected CRL layout from crypto/x509")
	}
	// TBSCertList ::= SEQUENCE { version, signature, issuer, thisUpdate,
	// nextUpdate, revokedCertificates (absent when empty), [0] crlExtensions }
	var body cryptobyte.String
	if !tbs.ReadASN1(&body, cbasn1.SEQUENCE) {
		return nil, errors.New("unexpected TBSCertList layout from crypto/x509")
	}
	content := []byte(body)
	var skip cryptobyte.String
	var tag cbasn1.Tag
	for range 5 { // version, signature, issuer, thisUpdate, nextUpdate
		if !body.ReadAnyASN1Element(&skip, &tag) {
			return nil, errors.New("unexpected TBSCertList layout from crypto/x509")
		}
	}
	head := len(content) - len(body)
	var nb cryptobyte.Builder
	nb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(content[:head])
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(entries) })
		b.AddBytes(content[head:])
	})
	newTBS, err := nb.Bytes()
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParseRevocationList(empty)
	if err != nil {
		return nil, err
	}
	hash, err := crlHash(parsed.SignatureAlgorithm)
	if err != nil {
		return nil, err
	}
	digest := newTBS
	if hash != 0 {
		h := hash.New()
		h.Write(newTBS)
		digest = h.Sum(nil)
	}
	sig, err := signer.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, fmt.Errorf("sign crl: %w", err)
	}
	var out cryptobyte.Builder
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(newTBS)
		b.AddBytes(sigAlg)
		b.AddASN1BitString(sig)
	})
	return out.Bytes()
}

// crlHash is the digest the signature algorithm crypto/x509 chose for the
// intermediate's key signs over (0: the message itself, for Ed25519).
func crlHash(alg x509.SignatureAlgorithm) (crypto.Hash, error) {
	switch alg {
	case x509.ECDSAWithSHA256, x509.SHA256WithRSA:
		return crypto.SHA256, nil
	case x509.ECDSAWithSHA384, x509.SHA384WithRSA:
		return crypto.SHA384, nil
	case x509.ECDSAWithSHA512, x509.SHA512WithRSA:
		return crypto.SHA512, nil
	case x509.PureEd25519:
		return 0, nil
	}
	return 0, fmt.Errorf("CRL signature algorithm %v is not supported", alg)
}
