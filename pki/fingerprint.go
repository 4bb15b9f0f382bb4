package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"
)

// Fingerprint is the SHA-256 of a certificate's DER, 64 lowercase hex
// digits, as `openssl x509 -fingerprint -sha256` prints it without colons.
// It is how a root is pinned everywhere in dockca.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts a fingerprint with or without colons, in any
// case, and returns it in Fingerprint's form.
func NormalizeFingerprint(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
}
