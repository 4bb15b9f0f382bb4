// Package scope is the one definition of how dockca certificates carry
// where they are used: a daemon certificate its groups, a client
// certificate its scope (the groups whose daemons it may reach), both as
// URI subject alternative names that openssl shows:
//
//	daemon: URI:urn:dockca:group:prod
//	client: URI:urn:dockca:scope:staging, URI:urn:dockca:scope:prod
//
// A client certificate without a scope reaches every daemon: that is what
// every certificate issued before scopes existed means. The package is
// below both the authority (package ca, which writes them) and the
// client-side packages (daemonsetup, which checks an installed
// certificate), so that neither needs the other.
package scope

import (
	"crypto/x509"
	"regexp"
	"slices"
	"strings"
)

// The URI prefixes; the group name follows.
const (
	ScopeURNPrefix = "urn:dockca:scope:"
	GroupURNPrefix = "urn:dockca:group:"
)

// NameRE is what a group name may be.
var NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// URIs are the URI SANs that carry groups under prefix.
func URIs(prefix string, groups []string) []string {
	out := make([]string, len(groups))
	for i, g := range groups {
		out[i] = prefix + g
	}
	return out
}

// withPrefix returns the names under prefix. A malformed name (dockca
// never issues one) is kept as it is: it matches no group, so a scope made
// only of such names reaches nothing instead of everything (fail closed).
func withPrefix(cert *x509.Certificate, prefix string) []string {
	var out []string
	for _, u := range cert.URIs {
		if g, ok := strings.CutPrefix(u.String(), prefix); ok {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ScopeOf returns the groups a client certificate may reach, sorted; nil
// means every daemon (an unscoped certificate).
func ScopeOf(cert *x509.Certificate) []string { return withPrefix(cert, ScopeURNPrefix) }

// GroupsOf returns the groups a daemon certificate was issued for, sorted.
func GroupsOf(cert *x509.Certificate) []string { return withPrefix(cert, GroupURNPrefix) }

// Through returns the groups by which a client with scope reaches a daemon
// in groups: all of the daemon's groups for an unscoped client, else the
// groups in both. reached is false when the client may not reach the
// daemon (a scoped client and a daemon in none of its groups, or in no
// group at all).
func Through(scope, groups []string) (through []string, reached bool) {
	if len(scope) == 0 {
		return groups, true
	}
	for _, g := range groups {
		if slices.Contains(scope, g) {
			through = append(through, g)
		}
	}
	return through, len(through) > 0
}
