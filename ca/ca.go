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

import "errors"

var (
	// ErrWrongPassword means the CA password does not decrypt the keys.
	ErrWrongPassword = errors.New("wrong CA password")
	// ErrBadCSR means a CSR could not be parsed or its signature is wrong.
	ErrBadCSR = errors.New("invalid certificate request")
)
