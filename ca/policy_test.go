package ca

import (
	"errors"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/tabletest"
	"github.com/dockca/dockca/pki"
)

// TestNamePolicy is fed by testdata/names.txt: kind, input, verdict.
func TestNamePolicy(t *testing.T) {
	for _, row := range tabletest.Rows(t, "testdata/names.txt", 3, 20) {
		kind, input, verdict := pki.Kind(row[0]), row[1], row[2]
		err := Precheck(Request{Kind: kind, Name: input})
		switch {
		case verdict == "ok" && err != nil:
			t.Errorf("%s %q: refused: %v", kind, input, err)
		case verdict != "ok" && err == nil:
			t.Errorf("%s %q: accepted, want %q", kind, input, verdict)
		case verdict != "ok" && !strings.Contains(err.Error(), verdict):
			t.Errorf("%s %q: %v, want %q", kind, input, err, verdict)
		case err != nil && !errors.Is(err, pki.ErrPolicy):
			t.Errorf("%s %q: %v does not match ErrPolicy", kind, input, err)
		}
	}
}

func TestRolesAndKinds(t *testing.T) {
	for _, r := range []pki.Role{"readonly", "operator", "admin"} {
		if err := pki.CheckRole(r); err != nil {
			t.Error(err)
		}
	}
	for _, r := range []pki.Role{"", "root", "Admin"} {
		if err := pki.CheckRole(r); err == nil {
			t.Errorf("role %q accepted", r)
		}
	}
	if err := Precheck(Request{Kind: pki.KindDaemon, Name: "h", Role: "admin"}); err == nil {
		t.Error("a daemon certificate with a role was accepted")
	}
	if err := Precheck(Request{Kind: pki.KindClient, Name: "c", SANs: []string{"h"}}); err == nil {
		t.Error("a client certificate with host names was accepted")
	}
	if _, err := pki.ParseKind("server"); err == nil {
		t.Error("kind server accepted")
	}
}
