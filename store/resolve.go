package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Resolve finds the certificates an argument names, the way the CLI and
// the service's admin API take them: a serial (hex, as openssl prints it)
// or else a name, every certificate of which is returned (unexpired ones
// only when unexpiredOnly). Nothing found is an error matching ErrNotFound.
func (s *Store) Resolve(ctx context.Context, arg string, unexpiredOnly bool, now time.Time) ([]*Certificate, error) {
	if n, err := ParseSerial(arg); err == nil {
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
	return nil, fmt.Errorf("no certificate with serial or name %q: %w", arg, ErrNotFound)
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
