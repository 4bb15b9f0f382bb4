// Package pki is dockca's certificate vocabulary: the words every other
// package uses to talk about certificates, defined once. Kinds and roles,
// the rules for client names, host names, SANs and groups, lifetimes, the
// serial and fingerprint formats, PEM encodings, key types, the Docker file
// layout, revocation reasons and the claims of a one-time token.
//
// It is a leaf: it imports only the standard library and go.step.sm/crypto
// (for key generation and token claims), never the authority (package ca),
// the database (package store) or smallstep's authority. So the client-side
// packages (enroll, contexts, daemonsetup, authz, gate) can speak the
// vocabulary without linking the CA or bbolt; deps_test.go at the module's
// root checks that they do not.
package pki

import "errors"

var (
	// ErrPolicy is matched by every refusal of the issuance policy: a bad
	// name, role, group, lifetime, key or reason.
	ErrPolicy = errors.New("refused by policy")
	// ErrTokenInvalid means a token failed verification (signature, issuer,
	// audience, validity or dockca's binding) or could not be read.
	ErrTokenInvalid = errors.New("invalid token")
)
