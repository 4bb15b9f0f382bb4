// Package ca is dockca's certificate authority: it creates the root and the
// intermediate that signs every leaf, holds the issuance profiles (daemon,
// client) and the policy that names and lifetimes must pass, and revokes
// certificates and publishes the CRL.
//
// smallstep's authority is embedded (its HTTP server is never run) with
// its persistence in the store's AuthDB: it holds the token provisioner's
// configuration and records revocations. Leaves and CRLs are made here
// (sign.go, crl.go): smallstep's signing and CRL paths cost several times
// more per certificate and per revocation, and the tests keep its signing
// path as the reference the certificates must match. Every certificate is
// recorded, with its token spent, in one transaction before it is handed
// out.
package ca

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"

	"github.com/dockca/dockca/internal/tlsbundle"
)

var (
	// ErrWrongPassword means the CA password does not decrypt the keys.
	ErrWrongPassword = errors.New("wrong CA password")
	// ErrPolicy is matched by every refusal of the issuance policy.
	ErrPolicy = errors.New("refused by policy")
	// ErrBadCSR means a CSR could not be parsed or its signature is wrong.
	ErrBadCSR = errors.New("invalid certificate request")
)

// Fingerprint is the SHA-256 of a certificate's DER (see
// tlsbundle.Fingerprint).
func Fingerprint(cert *x509.Certificate) string { return tlsbundle.Fingerprint(cert) }

// NormalizeFingerprint accepts a fingerprint with or without colons, in any
// case, and returns it in Fingerprint's form.
func NormalizeFingerprint(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
}

// PEMCert encodes one certificate.
func PEMCert(cert *x509.Certificate) []byte { return PEMDER(cert.Raw) }

// PEMChain encodes certificates in order.
func PEMChain(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, PEMCert(c)...)
	}
	return out
}

func pemBlock(b []byte, types ...string) []byte {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil
		}
		for _, t := range types {
			if blk.Type == t {
				return blk.Bytes
			}
		}
	}
}

// PEMDER encodes one DER certificate.
func PEMDER(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// PEMCRL encodes a DER CRL as PEM.
func PEMCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}
