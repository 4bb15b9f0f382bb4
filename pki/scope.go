package pki

// Groups and scope: how dockca certificates carry where they are used: a
// daemon certificate its groups, a client certificate its scope (the
// groups whose daemons it may reach), both as URI subject alternative
// names that openssl shows:
//
//	daemon: URI:urn:dockca:group:prod
//	client: URI:urn:dockca:scope:staging, URI:urn:dockca:scope:prod
//
// A client certificate without a scope reaches every daemon: that is what
// every certificate issued before scopes existed means.

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// The URI prefixes; the group name follows.
const (
	ScopeURNPrefix = "urn:dockca:scope:"
	GroupURNPrefix = "urn:dockca:group:"
)

// GroupNameRE is what a group name may be.
var GroupNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// GroupURIs are the URI SANs that carry groups under prefix.
func GroupURIs(prefix string, groups []string) ([]*url.URL, error) {
	var out []*url.URL
	for _, g := range groups {
		u, err := url.Parse(prefix + g)
		if err != nil {
			return nil, fmt.Errorf("group URI %q: %w", prefix+g, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// CheckGroupName validates one group name (a --group or --scope value).
func CheckGroupName(g string) error {
	if !GroupNameRE.MatchString(g) {
		return fmt.Errorf("group %q is not a group name (lowercase letters, digits and . _ -, starting with a letter or digit, at most 63 characters): %w", g, ErrPolicy)
	}
	return nil
}

// NormalizeGroups validates groups and returns them sorted without
// duplicates (nil for none), the form certificates and records carry.
func NormalizeGroups(groups []string) ([]string, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		if err := CheckGroupName(g); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// DescribeScope renders a client's scope for people: "all daemons" for
// an unscoped certificate.
func DescribeScope(s []string) string {
	if len(s) == 0 {
		return "all daemons"
	}
	return strings.Join(s, ",")
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
