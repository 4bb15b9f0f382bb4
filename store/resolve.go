package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store/kv"
)

// MinSerialPrefix is the fewest hex digits a serial prefix needs. Shorter
// arguments are only ever names.
const MinSerialPrefix = 4

// ErrAmbiguous is matched by the error of a serial prefix that more than
// one certificate's serial starts with.
var ErrAmbiguous = errors.New("ambiguous serial prefix")

// AmbiguousError lists the certificates a serial prefix matches (at most
// maxAmbiguous of them).
type AmbiguousError struct {
	Prefix  string
	Matches []*Certificate
	More    bool // more matched than are listed
}

const maxAmbiguous = 8

func (e *AmbiguousError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "serial prefix %q matches more than one certificate: ", e.Prefix)
	for i, c := range e.Matches {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s %q)", c.Serial, c.Kind, c.Name)
	}
	if e.More {
		b.WriteString(" and more")
	}
	b.WriteString("; give more digits")
	return b.String()
}

func (e *AmbiguousError) Unwrap() error { return ErrAmbiguous }

// Resolve finds the certificates an argument names, the way the CLI and
// the service's admin API take them, trying in order:
//
//  1. a full serial (hex as openssl prints it: any case, colons and
//     leading zeros optional) of a stored certificate: that certificate;
//  2. a name that certificates were issued to: every one of them
//     (unexpired ones only when unexpiredOnly), so a name always wins
//     over a serial prefix that looks like it;
//  3. a prefix of at least MinSerialPrefix hex digits (any case, colons
//     optional) of exactly one stored serial as dockca prints it: that
//     certificate. A prefix of several is an error matching ErrAmbiguous
//     that lists them.
//
// Nothing found is an error matching ErrNotFound.
func (s *Store) Resolve(ctx context.Context, arg string, unexpiredOnly bool, now time.Time) ([]*Certificate, error) {
	if n, err := pki.ParseSerial(arg); err == nil {
		c, err := s.Certificate(ctx, n)
		if err == nil {
			return []*Certificate{c}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	all, err := s.CertificatesByName(ctx, arg)
	if err != nil {
		return nil, err
	}
	var out []*Certificate
	for _, c := range all {
		if !unexpiredOnly || now.Before(c.NotAfter) {
			out = append(out, c)
		}
	}
	switch {
	case len(out) > 0:
		return out, nil
	case len(all) > 0:
		return nil, fmt.Errorf("every certificate of %q has expired: %w", arg, ErrNotFound)
	}
	if p, ok := serialPrefix(arg); ok {
		c, err := s.certificateByPrefix(ctx, p)
		if err == nil {
			return []*Certificate{c}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no certificate with serial or name %q: %w", arg, ErrNotFound)
}

// serialPrefix normalises arg as a serial prefix: lowercase hex digits,
// colons dropped, at least MinSerialPrefix of them.
func serialPrefix(arg string) (string, bool) {
	p := strings.ToLower(strings.ReplaceAll(arg, ":", ""))
	if len(p) < MinSerialPrefix {
		return "", false
	}
	for _, c := range p {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return "", false
		}
	}
	return p, true
}

// certificateByPrefix returns the one certificate whose serial (as
// pki.FormatSerial prints it) starts with the hex digits p.
func (s *Store) certificateByPrefix(ctx context.Context, p string) (*Certificate, error) {
	// Serials are keyed by their bytes, and the printed form is those
	// bytes in hex: the whole bytes of the prefix narrow the scan.
	seek, err := hex.DecodeString(p[:len(p)/2*2])
	if err != nil {
		return nil, err
	}
	var matches []*Certificate
	more := false
	err = s.view(ctx, func(tx kv.Tx) error {
		cur := tx.Bucket(bucketCerts).Cursor()
		for k, _ := cur.Seek(seek); k != nil && bytes.HasPrefix(k, seek); k, _ = cur.Next() {
			if !strings.HasPrefix(hex.EncodeToString(k), p) {
				continue
			}
			if len(matches) == maxAmbiguous {
				more = true
				return nil
			}
			c, err := getCert(tx, k)
			if err != nil {
				return err
			}
			matches = append(matches, c)
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("certificates with serial prefix %s: %w", p, err)
	case len(matches) == 0:
		return nil, ErrNotFound
	case len(matches) > 1:
		return nil, &AmbiguousError{Prefix: p, Matches: matches, More: more}
	}
	return matches[0], nil
}

// ResolveAll resolves every argument before the caller acts on any, so one
// unknown argument means nothing is done; certificates named twice are
// returned once.
func (s *Store) ResolveAll(ctx context.Context, args []string, unexpiredOnly bool, now time.Time) ([]*Certificate, error) {
	var out []*Certificate
	seen := map[string]bool{}
	for _, arg := range args {
		certs, err := s.Resolve(ctx, arg, unexpiredOnly, now)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			if !seen[c.Serial] {
				seen[c.Serial] = true
				out = append(out, c)
			}
		}
	}
	return out, nil
}
