package ca

import (
	"crypto/x509"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Groups and scope say where a certificate is used. A daemon belongs to
// groups (staging, prod); a client certificate's scope names the groups
// whose daemons it may reach. Both are written into the certificate as URI
// subject alternative names, so a plugin or gate enforces them from the
// presented certificate alone, without the database, and openssl shows them:
//
//	daemon: URI:urn:dockca:group:prod
//	client: URI:urn:dockca:scope:staging, URI:urn:dockca:scope:prod
//
// A client certificate without a scope reaches every daemon: that is what
// every certificate issued before scopes existed means.
const (
	ScopeURNPrefix = "urn:dockca:scope:"
	GroupURNPrefix = "urn:dockca:group:"
)

var groupNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckGroupName validates one group name (a --group or --scope value).
func CheckGroupName(g string) error {
	if !groupNameRE.MatchString(g) {
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

// groupURIs are the URI SANs that carry groups under prefix.
func groupURIs(prefix string, groups []string) []string {
	out := make([]string, len(groups))
	for i, g := range groups {
		out[i] = prefix + g
	}
	return out
}

func groupsWithPrefix(cert *x509.Certificate, prefix string) []string {
	var out []string
	for _, u := range cert.URIs {
		if g, ok := strings.CutPrefix(u.String(), prefix); ok && groupNameRE.MatchString(g) {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ScopeOf returns the groups a client certificate may reach; nil means
// every daemon (an unscoped certificate).
func ScopeOf(cert *x509.Certificate) []string { return groupsWithPrefix(cert, ScopeURNPrefix) }

// GroupsOf returns the groups a daemon certificate was issued for.
func GroupsOf(cert *x509.Certificate) []string { return groupsWithPrefix(cert, GroupURNPrefix) }

// Through returns the groups by which a client with scope reaches a daemon
// in groups: all of the daemon's groups for an unscoped client, else the
// groups in both. Empty means the client may not reach the daemon; for
// an unscoped client and a daemon in no group, reached is still true.
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

// DescribeScope renders a client's scope for people: "all daemons" for
// an unscoped certificate.
func DescribeScope(scope []string) string {
	if len(scope) == 0 {
		return "all daemons"
	}
	return strings.Join(scope, ",")
}
