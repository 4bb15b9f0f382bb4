package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/tabletest"
)

// TestParseSAN is fed by testdata/sans.txt.
func TestParseSAN(t *testing.T) {
	for _, row := range tabletest.Rows(t, "testdata/sans.txt", 2, 10) {
		in, want := row[0], row[1]
		san, err := ParseSAN(in)
		switch {
		case err == nil && san.String() != want:
			t.Errorf("ParseSAN(%q) = %q, want %q", in, san, want)
		case err != nil && !strings.Contains(err.Error(), want):
			t.Errorf("ParseSAN(%q): %v, want %q", in, err, want)
		case err != nil && !errors.Is(err, ErrPolicy):
			t.Errorf("ParseSAN(%q): %v does not match ErrPolicy", in, err)
		}
	}
}

// Covers is exact: dockca issues no wildcards, so a certificate naming
// *.example covers nothing; case and a trailing dot do not matter.
func TestCovers(t *testing.T) {
	cert := &x509.Certificate{
		DNSNames:    []string{"docker1.example", "*.example"},
		IPAddresses: []net.IP{net.ParseIP("10.0.0.7").To4(), net.ParseIP("::1")},
	}
	for name, want := range map[string]bool{
		"docker1.example": true, "DOCKER1.example.": true, "10.0.0.7": true, "::1": true, "[::1]": true,
		"other.example": false, "docker2.example": false, "10.0.0.8": false, "bad_name": false, "": false,
	} {
		if got := Covers(cert, name); got != want {
			t.Errorf("Covers(%q) = %v, want %v", name, got, want)
		}
	}
	if got := Uncovered(cert, []string{"docker1.example", "10.0.0.7", "other.example", "x.example"}); got != "other.example" {
		t.Errorf("Uncovered = %q, want other.example", got)
	}
	if got := Uncovered(cert, []string{"docker1.example", "::1"}); got != "" {
		t.Errorf("Uncovered = %q, want none", got)
	}
}

func TestSerialFormat(t *testing.T) {
	for in, want := range map[string]string{"0a": "0a", "0A": "0a", "a": "0a", "01:00": "0100", "0x1f": "1f", " ff ": "ff"} {
		n, err := ParseSerial(in)
		if err != nil || FormatSerial(n) != want {
			t.Errorf("ParseSerial(%q) = %v, %v; want %s", in, n, err, want)
		}
	}
	for _, in := range []string{"", "0", "00:00", "xyz", "-1", strings.Repeat("f", 81)} {
		if n, err := ParseSerial(in); err == nil {
			t.Errorf("ParseSerial(%q) = %v, want an error", in, n)
		}
	}
	n, err := RandomSerial()
	if err != nil || n.BitLen() <= 128 || n.BitLen() > 159 {
		t.Fatalf("RandomSerial = %v (%d bits), %v", n, n.BitLen(), err)
	}
	if got := SerialOf(&x509.Certificate{SerialNumber: n}); got != FormatSerial(n) {
		t.Errorf("SerialOf = %q", got)
	}
	if got := SerialOf(&x509.Certificate{}); got != "" {
		t.Errorf("SerialOf(no serial) = %q", got)
	}
}

func TestRoles(t *testing.T) {
	for _, r := range Roles {
		if err := CheckRole(r); err != nil {
			t.Error(err)
		}
	}
	for _, r := range []Role{"", "root", "Admin", "deployer"} {
		if err := CheckRole(r); !errors.Is(err, ErrPolicy) {
			t.Errorf("CheckRole(%q) = %v, want a policy refusal", r, err)
		}
	}
	if err := CheckRole("deployer", "deployer"); err != nil {
		t.Errorf("a role of the stored policy: %v", err)
	}
	if err := CheckRole("deployer", AnyRole...); err != nil {
		t.Errorf("any well-formed role: %v", err)
	}
	ro, _ := RoleReadonly.Rank()
	op, _ := RoleOperator.Rank()
	ad, _ := RoleAdmin.Rank()
	if !(ro < op && op < ad) {
		t.Errorf("ranks readonly %d operator %d admin %d", ro, op, ad)
	}
	if _, ok := Role("deployer").Rank(); ok {
		t.Error("a policy role has a rank")
	}
}

func TestVocabulary(t *testing.T) {
	if c, k := CertFiles(KindClient); c != "cert.pem" || k != "key.pem" {
		t.Errorf("client files %s %s", c, k)
	}
	for _, kind := range []Kind{KindDaemon, KindService} {
		if c, k := CertFiles(kind); c != "server-cert.pem" || k != "server-key.pem" {
			t.Errorf("%s files %s %s", kind, c, k)
		}
	}
	if _, err := ParseKind("service"); !errors.Is(err, ErrPolicy) {
		t.Errorf("kind service can be asked for: %v", err)
	}
	for code, want := range map[int]string{0: "unspecified", 1: "key-compromise", 2: "ca-compromise", 6: "certificate-hold", 10: "aa-compromise", 7: "reason-7"} {
		if got := ReasonName(code); got != want {
			t.Errorf("ReasonName(%d) = %q, want %q", code, got, want)
		}
	}
	for _, r := range Reasons {
		if got, err := ParseReason(r.Name); err != nil || got != r || ReasonName(r.Code) != r.Name {
			t.Errorf("reason %v: %v %v", r, got, err)
		}
	}
	if _, err := ParseReason("ca-compromise"); !errors.Is(err, ErrPolicy) {
		t.Errorf("ca-compromise can be given: %v", err)
	}
	if got := NormalizeFingerprint(" AB:cd:EF "); got != "abcdef" {
		t.Errorf("NormalizeFingerprint = %q", got)
	}
}
