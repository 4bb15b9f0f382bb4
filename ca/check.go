package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// CheckReport is what `dockca check` found.
type CheckReport struct {
	Certificates int `json:"certificates"`
	Revocations  int `json:"revocations"`
	Tokens       int `json:"tokens"`
	// Keys says how the CA keys were checked.
	Keys     string          `json:"keys"`
	Problems []store.Problem `json:"problems"`
}

// OK reports a check without problems.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

// CheckOptions configure Check.
type CheckOptions struct {
	// Password decrypts the CA keys (ignored for a CA made with
	// --no-password).
	Password []byte
	// KeysChecked, when set, replaces the key check: a running service
	// has unlocked the keys already and says so here.
	KeysChecked string
	// KeyProblems are what that earlier key check found.
	KeyProblems []store.Problem
}

// Check verifies a database: the store's own check (bbolt consistency,
// records decode, indexes agree), then that the CA certificates parse and
// the CA keys decrypt and match them, and that every certificate record
// parses, matches its record and chains to this CA.
func Check(ctx context.Context, st *store.Store, o CheckOptions) (*CheckReport, error) {
	res, err := st.Check(ctx)
	if err != nil {
		return nil, err
	}
	rep := &CheckReport{Certificates: len(res.Certificates), Revocations: res.Revocations, Tokens: res.Tokens, Problems: res.Problems}
	add := func(where, format string, args ...any) {
		rep.Problems = append(rep.Problems, store.Problem{Where: where, Problem: fmt.Sprintf(format, args...)})
	}
	rec, root, inter, err := LoadCertificates(ctx, st)
	if err != nil {
		var de *store.DamagedError
		if errors.As(err, &de) || errors.Is(err, store.ErrNoCA) {
			add("ca", "%v", err)
			rep.Keys = "not checked: no readable CA"
			return rep, nil
		}
		add("ca", "the CA certificates do not parse: %v", err)
		rep.Keys = "not checked: no readable CA"
		return rep, nil
	}
	if err := VerifyChain(root, nil, inter, x509.ExtKeyUsageAny, inter.NotBefore.Add(time.Second)); err != nil {
		add("ca", "the intermediate does not chain to the root: %v", err)
	}
	if pki.Fingerprint(root) != rec.RootFingerprint {
		add("ca", "the recorded root fingerprint %s is not the root's %s", rec.RootFingerprint, pki.Fingerprint(root))
	}
	if o.KeysChecked != "" {
		rep.Keys = o.KeysChecked
		rep.Problems = append(rep.Problems, o.KeyProblems...)
	} else {
		rep.Keys = "decrypted with the password and matched to the CA certificates"
		if !rec.Encrypted {
			rep.Keys = "stored unencrypted (--no-password); matched to the CA certificates"
		}
		rep.Problems = append(rep.Problems, CheckKeys(rec, root, inter, o.Password)...)
		rep.Problems = append(rep.Problems, checkGenerationKeys(rec, o.Password)...)
	}
	// Certificates of every generation are this CA's, retired ones too.
	everRoots, everInters, err := allGenerations(rec)
	if err != nil {
		add("ca", "%v", err)
	}
	for _, c := range res.Certificates {
		where := "certificate " + c.Serial
		leaf, err := x509.ParseCertificate(c.DER)
		if err != nil {
			add(where, "the certificate does not parse: %v", err)
			continue
		}
		if pki.FormatSerial(leaf.SerialNumber) != c.Serial {
			add(where, "the certificate's serial is %s", pki.FormatSerial(leaf.SerialNumber))
		}
		if pki.Fingerprint(leaf) != c.Fingerprint {
			add(where, "the recorded fingerprint does not match the certificate")
		}
		if leaf.Subject.CommonName != c.Name {
			add(where, "the record names %q, the certificate %q", c.Name, leaf.Subject.CommonName)
		}
		// Chained as of its own validity, so expired certificates are
		// checked too.
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: everRoots, Intermediates: everInters,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: leaf.NotBefore.Add(time.Second)}); err != nil {
			add(where, "does not chain to this CA: %v", err)
		}
	}
	return rep, nil
}

// CheckKeys reports whether both CA keys decrypt with password (ignored
// for an unencrypted CA) and match their certificates.
func CheckKeys(rec *store.CA, root, inter *x509.Certificate, password []byte) []store.Problem {
	var out []store.Problem
	for _, k := range []struct {
		name string
		pem  []byte
		cert *x509.Certificate
	}{{"root key", rec.RootKeyPEM, root}, {"intermediate key", rec.IntermediateKey, inter}} {
		var pw []byte
		if rec.Encrypted {
			pw = password
		}
		key, err := DecryptKey(k.pem, pw)
		if err != nil {
			out = append(out, store.Problem{Where: k.name, Problem: err.Error()})
			continue
		}
		if !publicKeysEqual(key.Public(), k.cert.PublicKey) {
			out = append(out, store.Problem{Where: k.name, Problem: "does not match its certificate"})
		}
	}
	return out
}

func publicKeysEqual(a, b any) bool {
	type equaler interface{ Equal(x any) bool }
	if e, ok := a.(equaler); ok {
		return e.Equal(b)
	}
	ab, err1 := x509.MarshalPKIXPublicKey(a)
	bb, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// CheckRequest applies the policy to r with the CA's intermediate and its
// stored policy's roles, without unlocking any key: commands call it
// before they ask for the password or write anything.
func CheckRequest(ctx context.Context, st *store.Store, r Request) (*Normalized, error) {
	_, _, inter, err := LoadCertificates(ctx, st)
	if err != nil {
		return nil, err
	}
	roles, err := PolicyRoles(ctx, st)
	if err != nil {
		return nil, err
	}
	return check(r, inter, roles, time.Now())
}
