package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// RevokeResult says what a revocation did.
type RevokeResult struct {
	Record *store.Certificate
	// Already is true when the certificate had been revoked before; the
	// first revocation is kept and nothing changes.
	Already bool
}

// Revoke revokes one certificate issued by this CA and regenerates the CRL
// (shared with revocations made at the same time, see GenerateCRL), so
// the revocation is in the CRL by the time Revoke returns. Revoking a
// revoked certificate is not an error: Already says so.
func (a *Authority) Revoke(ctx context.Context, serial *big.Int, reason pki.Reason) (*RevokeResult, error) {
	res, err := a.revoke(ctx, serial, reason)
	if err != nil || res.Already {
		return res, err
	}
	if _, err := a.GenerateCRL(ctx); err != nil {
		return nil, fmt.Errorf("revoke %s: %w", res.Record.Serial, err)
	}
	return res, nil
}

// revoke records one revocation without regenerating the CRL.
func (a *Authority) revoke(ctx context.Context, serial *big.Int, reason pki.Reason) (*RevokeResult, error) {
	if a.step == nil || !a.crl {
		return nil, errNotOpen
	}
	rec, err := a.st.Certificate(ctx, serial)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("revoke %s: no certificate with that serial was issued by this CA: %w", pki.FormatSerial(serial), store.ErrNotFound)
		}
		return nil, fmt.Errorf("revoke %s: %w", pki.FormatSerial(serial), err)
	}
	if rec.Revocation != nil {
		return &RevokeResult{Record: rec, Already: true}, nil
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, fmt.Errorf("revoke %s: %w", rec.Serial, err)
	}
	rctx := provisioner.NewContextWithMethod(ctx, provisioner.RevokeMethod)
	err = a.step.Revoke(rctx, &authority.RevokeOptions{
		Serial: serial.String(), Reason: reason.Name, ReasonCode: reason.Code, MTLS: true, Crt: cert,
	})
	if err != nil {
		// A concurrent revocation of the same serial lost the race; the
		// result is the same.
		if again, gerr := a.st.Certificate(ctx, serial); gerr == nil && again.Revocation != nil {
			return &RevokeResult{Record: again, Already: true}, nil
		}
		return nil, fmt.Errorf("revoke %s: %w", rec.Serial, err)
	}
	rec, err = a.st.Certificate(ctx, serial)
	if err != nil {
		return nil, fmt.Errorf("revoke %s: %w", pki.FormatSerial(serial), err)
	}
	return &RevokeResult{Record: rec}, nil
}

// CRLFreshFor is how long before its nextUpdate a stored CRL is still
// handed out as is; closer than that, it is regenerated first.
const CRLFreshFor = time.Hour

// CurrentCRL returns the stored CRL when it is fresh, without unlocking any
// key. It returns (nil, nil) when a new CRL must be generated.
func CurrentCRL(ctx context.Context, st *store.Store, now time.Time) (*store.CRL, error) {
	crl, err := st.CRL(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !crlCurrent(ctx, st, crl, now) {
		return nil, nil
	}
	return crl, nil
}

// CurrentCRLHeader is CurrentCRL without the DER: the stored CRL's
// number, times and revocation counter when it is current, else nil. It
// reads nothing that grows with the number of revocations, for start-up,
// periodic checks and the service's in-memory copy.
func CurrentCRLHeader(ctx context.Context, st *store.Store, now time.Time) (*store.CRL, error) {
	h, err := st.CRLHeader(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !crlCurrent(ctx, st, h, now) {
		return nil, nil
	}
	return h, nil
}

// crlCurrent reports a CRL that is neither close to its nextUpdate nor
// outdated by a later revocation.
func crlCurrent(ctx context.Context, st *store.Store, crl *store.CRL, now time.Time) bool {
	return !now.Add(CRLFreshFor).After(crl.NextUpdate) && !crlOutdated(ctx, st, crl)
}

// crlOutdated reports a revocation recorded after the CRL's snapshot: a
// crash between the two transactions of a revocation leaves exactly that,
// and the next CRL request repairs it.
func crlOutdated(ctx context.Context, st *store.Store, crl *store.CRL) bool {
	seq, err := st.RevocationSeq(ctx)
	return err != nil || seq != crl.RevocationSeq
}

// maxRevokeRounds bounds RevokeTargets' follow-up rounds; each round needs
// a renewal or issuance that raced the previous one, so a handful is plenty.
const maxRevokeRounds = 16

// RevokeTargets revokes every certificate args name: a serial, or a name
// meaning each unexpired certificate of it. Every argument is resolved
// before anything is revoked, so an unknown one revokes nothing. Names are
// resolved again after each round until no unrevoked certificate of them
// is left, so a renewal that raced the revocation is caught; and for
// key-compromise, unexpired certificates renewed from a revoked one (with
// the compromised key in hand) are revoked too.
func (a *Authority) RevokeTargets(ctx context.Context, args []string, reason pki.Reason) (results []*RevokeResult, err error) {
	queue, err := a.st.ResolveAll(ctx, args, true, time.Now())
	if err != nil {
		return nil, err
	}
	// One CRL for the whole command, however many it revoked; also when
	// it stops early, so what was revoked is published.
	defer func() {
		for _, r := range results {
			if !r.Already {
				if _, gerr := a.GenerateCRL(ctx); gerr != nil && err == nil {
					err = gerr
				}
				return
			}
		}
	}()
	done := map[string]bool{}
	for round := 0; len(queue) > 0; round++ {
		if round == maxRevokeRounds {
			return results, fmt.Errorf("certificates of %q are still being issued; revoked %d so far, run it again", args, len(results))
		}
		var next []*store.Certificate
		for _, c := range queue {
			if done[c.Serial] {
				continue
			}
			done[c.Serial] = true
			serial, err := pki.ParseSerial(c.Serial)
			if err != nil {
				return results, err
			}
			res, err := a.revoke(ctx, serial, reason)
			if err != nil {
				return results, err
			}
			results = append(results, res)
			if reason.Code == pki.ReasonKeyCompromise.Code {
				kids, err := a.st.RenewalsOf(ctx, c.Serial, time.Now())
				if err != nil {
					return results, err
				}
				next = append(next, kids...)
			}
		}
		again, err := a.st.ResolveAll(ctx, args, true, time.Now())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return results, err
		}
		for _, c := range again {
			if !done[c.Serial] && c.Revocation == nil {
				next = append(next, c)
			}
		}
		queue = next
	}
	return results, nil
}
