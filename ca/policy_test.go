package ca

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/dockca/dockca/pki"
)

// TestNamePolicy is fed by testdata/names.txt: kind, input, verdict.
func TestNamePolicy(t *testing.T) {
	f, err := os.Open("testdata/names.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		parts := strings.Split(line, "\t")
		if len(parts) != 3 {
			t.Fatalf("bad testdata line %q", line)
		}
		kind, input, verdict := pki.Kind(parts[0]), parts[1], parts[2]
		n++
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
	if n < 20 {
		t.Fatalf("only %d cases read", n)
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
