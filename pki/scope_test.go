package pki

import (
	"crypto/x509"
	"net/url"
	"slices"
	"testing"
)

func TestThrough(t *testing.T) {
	for _, c := range []struct {
		scope, groups, want []string
		reached             bool
	}{
		{nil, []string{"prod"}, []string{"prod"}, true},
		{nil, nil, nil, true},
		{[]string{"staging"}, []string{"prod"}, nil, false},
		{[]string{"staging"}, nil, nil, false},
		{[]string{"prod", "staging"}, []string{"prod", "x"}, []string{"prod"}, true},
	} {
		got, ok := Through(c.scope, c.groups)
		if ok != c.reached || !slices.Equal(got, c.want) {
			t.Errorf("Through(%v, %v) = %v, %v", c.scope, c.groups, got, ok)
		}
	}
}

// Only names under the right prefix count; a malformed one is kept, so it
// narrows the scope to nothing rather than widening it to everything.
func TestScopeOfFailsClosed(t *testing.T) {
	var c x509.Certificate
	for _, s := range []string{"urn:dockca:scope:prod", "urn:dockca:scope:Bad Name", "urn:dockca:group:edge",
		"https://example.com/urn:dockca:scope:x", "urn:dockca:scope:prod", "urn:dockca:scope:"} {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		c.URIs = append(c.URIs, u)
	}
	if got := ScopeOf(&c); !slices.Equal(got, []string{"", "Bad Name", "prod"}) {
		t.Errorf("ScopeOf = %q", got)
	}
	var bad x509.Certificate
	u, _ := url.Parse("urn:dockca:scope:Not_Valid")
	bad.URIs = append(bad.URIs, u)
	if through, ok := Through(ScopeOf(&bad), []string{"prod", "staging"}); ok {
		t.Errorf("a malformed scope reaches %v", through)
	}
	if got := GroupsOf(&c); !slices.Equal(got, []string{"edge"}) {
		t.Errorf("GroupsOf = %v", got)
	}
}
