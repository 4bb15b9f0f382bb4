package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var clientNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// CheckClientName enforces the client-name rule.
func CheckClientName(name string) error {
	if name == "" {
		return fmt.Errorf("the client name is empty: %w", ErrPolicy)
	}
	if !clientNameRE.MatchString(name) {
		return fmt.Errorf("client name %q is not allowed (letters, digits and . _ @ -, starting with a letter or digit, at most 64 characters): %w", name, ErrPolicy)
	}
	return nil
}

// CheckCommonName enforces the rule for a CA's own names (the root's and
// intermediate's subject): 1 to 64 characters, no control characters.
func CheckCommonName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("%q must be 1 to 64 characters: %w", s, ErrPolicy)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q contains control characters: %w", s, ErrPolicy)
		}
	}
	return nil
}

// CheckDNSName enforces RFC 1123 host names: labels of letters, digits and
// hyphens, not starting or ending with a hyphen, at most 63 characters
// each, 253 in all. Wildcards are refused: a daemon certificate names one
// host. It is the one host-name rule: for SANs, for the names daemon setup
// asks for, and for the hosts the exposure audit looks up.
func CheckDNSName(name string) error {
	if name == "" {
		return fmt.Errorf("the host name is empty: %w", ErrPolicy)
	}
	if strings.Contains(name, "*") {
		return fmt.Errorf("wildcard name %q is not allowed: %w", name, ErrPolicy)
	}
	n := strings.TrimSuffix(name, ".")
	if len(n) > 253 {
		return fmt.Errorf("host name %q is longer than 253 characters: %w", name, ErrPolicy)
	}
	for _, label := range strings.Split(n, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("host name %q has an empty or over-long label: %w", name, ErrPolicy)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host name %q has a label starting or ending with a hyphen: %w", name, ErrPolicy)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("host name %q contains %q, which RFC 1123 does not allow: %w", name, r, ErrPolicy)
			}
		}
	}
	// All-numeric names look like malformed IP addresses.
	if _, err := strconv.Atoi(strings.ReplaceAll(n, ".", "")); err == nil {
		return fmt.Errorf("%q is neither an IP address nor a host name: %w", name, ErrPolicy)
	}
	return nil
}

// SAN is one subject alternative name, typed.
type SAN struct {
	DNS string
	IP  net.IP
}

func (s SAN) String() string {
	if s.IP != nil {
		return s.IP.String()
	}
	return s.DNS
}

// ParseSAN types a --san value: an IP address if it parses as one, else a
// DNS name that must pass CheckDNSName, in lower case without a trailing
// dot.
func ParseSAN(s string) (SAN, error) {
	s = strings.TrimSpace(s)
	if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		return SAN{IP: ip}, nil
	}
	if err := CheckDNSName(s); err != nil {
		return SAN{}, err
	}
	return SAN{DNS: strings.ToLower(strings.TrimSuffix(s, "."))}, nil
}

// DaemonSANs returns host plus extra, typed, deduplicated, host first.
func DaemonSANs(host string, extra []string) ([]SAN, error) {
	var out []SAN
	seen := map[string]bool{}
	for _, s := range append([]string{host}, extra...) {
		san, err := ParseSAN(s)
		if err != nil {
			return nil, err
		}
		if k := san.String(); !seen[k] {
			seen[k] = true
			out = append(out, san)
		}
	}
	return out, nil
}

// SANStrings lists a certificate's DNS and IP SANs, DNS names first, as
// records and listings show them.
func SANStrings(c *x509.Certificate) []string { return nameStrings(c.DNSNames, c.IPAddresses) }

// CSRNames lists the DNS and IP names a CSR asks for, DNS names first.
func CSRNames(csr *x509.CertificateRequest) []string {
	return nameStrings(csr.DNSNames, csr.IPAddresses)
}

func nameStrings(dns []string, ips []net.IP) []string {
	out := append([]string(nil), dns...)
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// Covers reports whether cert names name exactly (dockca issues no
// wildcards, so none is honoured): an IP address among its IP SANs, a
// host name among its DNS SANs, in any case.
func Covers(cert *x509.Certificate, name string) bool {
	san, err := ParseSAN(name)
	if err != nil {
		return false
	}
	if san.IP != nil {
		return slices.ContainsFunc(cert.IPAddresses, san.IP.Equal)
	}
	return slices.ContainsFunc(cert.DNSNames, func(d string) bool {
		return strings.EqualFold(strings.TrimSuffix(d, "."), san.DNS)
	})
}

// Uncovered is the first of names cert does not cover (Covers), or "".
func Uncovered(cert *x509.Certificate, names []string) string {
	for _, n := range names {
		if !Covers(cert, n) {
			return n
		}
	}
	return ""
}
