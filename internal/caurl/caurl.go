// Package caurl is the one definition of how a dockca CA service is named
// by its clients: a base URL like https://ca.example:8443, or a list of
// them (the service's replicas, tried in turn), as --ca-url and
// DOCKCA_CA_URL take it (comma-separated) and as dockca-enroll.json and a
// docker context's marker record it. It is a leaf: client packages use it
// without the authority or the database.
package caurl

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dockca/dockca/pki"
)

// ErrInvalid marks a URL or list that is not acceptable.
var ErrInvalid = errors.New("invalid CA URL")

// Normalize checks a service base URL (https, a host, nothing else: the
// rule is pki.NormalizeCAURL's) and returns it as https://HOST[:PORT].
func Normalize(s string) (string, error) {
	u, err := pki.NormalizeCAURL(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q must look like https://ca.example:8443", ErrInvalid, s)
	}
	return u, nil
}

// Parse parses one or more base URLs separated by commas (spaces around
// them are ignored). An empty entry, a malformed one or the same URL twice
// is an error that quotes it.
func Parse(s string) ([]string, error) {
	return Check(strings.Split(s, ","))
}

// Check normalises a list of base URLs (see Parse).
func Check(list []string) ([]string, error) {
	if len(list) == 0 {
		return nil, fmt.Errorf("%w: no CA URL given", ErrInvalid)
	}
	out := make([]string, 0, len(list))
	for _, raw := range list {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			return nil, fmt.Errorf("%w: the list %q has an empty entry", ErrInvalid, strings.Join(list, ","))
		}
		u, err := Normalize(entry)
		if err != nil {
			return nil, err
		}
		// Host names are case-insensitive: the same replica either way.
		if slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, u) }) {
			return nil, fmt.Errorf("%w: %q is listed twice", ErrInvalid, entry)
		}
		out = append(out, u)
	}
	return out, nil
}

// Format is the list as --ca-url takes it.
func Format(urls []string) string { return strings.Join(urls, ",") }

// Record returns the two fields that record urls: the first URL (ca_url,
// all a record from before lists holds, and what an older dockca reads)
// and, when there are several, all of them in order (ca_urls). A single
// URL is recorded exactly as before.
func Record(urls []string) (first string, all []string) {
	switch len(urls) {
	case 0:
		return "", nil
	case 1:
		return urls[0], nil
	}
	return urls[0], slices.Clone(urls)
}

// FromRecord is the inverse of Record: the URLs a record names (nil: none).
func FromRecord(first string, all []string) []string {
	if len(all) > 0 {
		return slices.Clone(all)
	}
	if first != "" {
		return []string{first}
	}
	return nil
}
