package pki

import (
	"fmt"
	"net/url"
	"strings"

	"go.step.sm/crypto/jose"
)

// One-time tokens are JWTs in the form `step ca token` makes them: the
// standard claims (iss = TokenIssuer, aud = the CA's sign or revoke URL,
// sub = the name, sans, jti, nbf, exp) plus a "dockca" claim binding the
// token to a kind, a role, groups and a certificate lifetime. The
// authority (package ca) signs and verifies them; clients only read them
// (PeekToken) to learn what to put in their CSR.

// TokenIssuer is the issuer (iss) of every dockca token: the name of the
// token provisioner.
const TokenIssuer = "dockca-tokens"

// TokenKindRevoke is the kind of an admin token that revokes one serial.
const TokenKindRevoke = "revoke"

// TokenClaims are the claims of a dockca token.
type TokenClaims struct {
	jose.Claims
	SANs   []string     `json:"sans,omitempty"`
	Dockca DockcaClaims `json:"dockca"`
}

// DockcaClaims bind a token to what it may be used for.
type DockcaClaims struct {
	Kind string `json:"kind"` // client, daemon or revoke
	Role Role   `json:"role,omitempty"`
	// TTL is the certificate lifetime in seconds; 0 means the kind's default.
	TTL int64 `json:"ttl,omitempty"`
	// Groups are the daemon's groups or the client's scope.
	Groups []string `json:"groups,omitempty"`
}

// PeekToken decodes a token's claims without verifying it: clients use it
// to learn what to put in their CSR; the service never trusts it.
func PeekToken(tok string) (*TokenClaims, error) {
	jwt, err := jose.ParseSigned(strings.TrimSpace(tok))
	if err != nil {
		return nil, fmt.Errorf("%w: not a JWT", ErrTokenInvalid)
	}
	var c TokenClaims
	if err := jwt.UnsafeClaimsWithoutVerification(&c); err != nil {
		return nil, fmt.Errorf("%w: unreadable claims", ErrTokenInvalid)
	}
	return &c, nil
}

// NormalizeCAURL checks a service URL (https, a host, nothing else) and
// returns it without a trailing slash.
func NormalizeCAURL(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Hostname() == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("CA URL %q must look like https://ca.example:8443: %w", s, ErrPolicy)
	}
	return "https://" + u.Host, nil
}
