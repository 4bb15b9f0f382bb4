package ca

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/dockca/dockca/internal/scope"
)

// Groups and scope say where a certificate is used (see package
// internal/scope for the encoding): a daemon belongs to groups, a client
// certificate's scope names the groups whose daemons it may reach, and
// without a scope it reaches every daemon.
const (
	ScopeURNPrefix = scope.ScopeURNPrefix
	GroupURNPrefix = scope.GroupURNPrefix
)

// CheckGroupName validates one group name (a --group or --scope value).
func CheckGroupName(g string) error {
	if !scope.NameRE.MatchString(g) {
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

// ScopeOf returns the groups a client certificate may reach; nil means
// every daemon.
func ScopeOf(cert *x509.Certificate) []string { return scope.ScopeOf(cert) }

// GroupsOf returns the groups a daemon certificate was issued for.
func GroupsOf(cert *x509.Certificate) []string { return scope.GroupsOf(cert) }

// Through returns the groups by which a client with scope reaches a daemon
// in groups (see scope.Through).
func Through(clientScope, groups []string) ([]string, bool) {
	return scope.Through(clientScope, groups)
}

// DescribeScope renders a client's scope for people: "all daemons" for
// an unscoped certificate.
func DescribeScope(s []string) string {
	if len(s) == 0 {
		return "all daemons"
	}
	return strings.Join(s, ",")
}
