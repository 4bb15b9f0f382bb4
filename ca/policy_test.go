package ca

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

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

func TestTTLPolicy(t *testing.T) {
	day := 24 * time.Hour
	cases := []struct {
		kind pki.Kind
		in   time.Duration
		want time.Duration
		err  string
	}{
		{pki.KindClient, 0, 30 * day, ""},
		{pki.KindDaemon, 0, 90 * day, ""},
		{pki.KindClient, 90 * day, 90 * day, ""},
		{pki.KindClient, 90*day + time.Second, 0, "above the client maximum of 90d"},
		{pki.KindDaemon, 365 * day, 365 * day, ""},
		{pki.KindDaemon, 366 * day, 0, "above the daemon maximum of 365d"},
		{pki.KindClient, time.Minute, 0, "shorter than the minimum"},
		{pki.KindClient, -time.Hour, 0, "negative"},
	}
	for _, c := range cases {
		got, err := pki.TTLFor(c.kind, c.in)
		if c.err == "" && (err != nil || got != c.want) {
			t.Errorf("TTLFor(%s, %s) = %s, %v", c.kind, c.in, got, err)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("TTLFor(%s, %s) error %v, want %q", c.kind, c.in, err, c.err)
		}
	}
	for in, want := range map[string]time.Duration{"30d": 30 * day, "12h": 12 * time.Hour, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute} {
		if got, err := pki.ParseTTL(in); err != nil || got != want {
			t.Errorf("ParseTTL(%q) = %s, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "soon", "3x", "-d", "99999d"} {
		if _, err := pki.ParseTTL(in); err == nil {
			t.Errorf("ParseTTL(%q) accepted", in)
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
