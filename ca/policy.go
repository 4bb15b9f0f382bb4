package ca

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/dockca/dockca/store"
)

// Roles a client certificate can carry. The role travels in the
// certificate (as its single Subject OU), so enforcement can read it from
// the certificate alone.
const (
	RoleReadonly = "readonly"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// Roles lists the known roles.
var Roles = []string{RoleReadonly, RoleOperator, RoleAdmin}

// Lifetimes: defaults and the maximums that refuse anything longer.
const (
	DefaultDaemonTTL = 90 * 24 * time.Hour
	DefaultClientTTL = 30 * 24 * time.Hour
	MaxDaemonTTL     = 365 * 24 * time.Hour
	MaxClientTTL     = 90 * 24 * time.Hour
	MinTTL           = 5 * time.Minute
)

var clientNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ParseKind validates a --kind value.
func ParseKind(s string) (store.Kind, error) {
	switch store.Kind(s) {
	case store.KindClient, store.KindDaemon:
		return store.Kind(s), nil
	}
	return "", fmt.Errorf("unknown kind %q (use client or daemon): %w", s, ErrPolicy)
}

// roleNameRE is the form of a role name, the same as the authorization
// plugin's policy files require.
var roleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// AnyRole, given as the extra roles of a check made before the CA (and so
// its stored policy) is at hand, accepts every well-formed role name; the
// CA checks the role against its policy when it issues.
var AnyRole = []string{"*"}

// CheckRoleName checks only the form of a role name.
func CheckRoleName(role string) error {
	if !roleNameRE.MatchString(role) {
		return fmt.Errorf("role %q is not a role name (lowercase letters, digits and . _ -, at most 64 characters): %w", role, ErrPolicy)
	}
	return nil
}

// CheckRole validates a --role value against the built-in roles and extra,
// the roles of the CA's stored policy.
func CheckRole(role string, extra ...string) error {
	if err := CheckRoleName(role); err != nil {
		return err
	}
	for _, r := range Roles {
		if r == role {
			return nil
		}
	}
	for _, r := range extra {
		if r == role || r == AnyRole[0] {
			return nil
		}
	}
	return fmt.Errorf("unknown role %q (use readonly, operator or admin, or a role of the policy stored with 'dockca policy set'): %w", role, ErrPolicy)
}

// PolicyRoles returns the roles of the policy stored in st (nil when none
// is stored): issuance accepts them beside the built-in ones.
func PolicyRoles(ctx context.Context, st *store.Store) ([]string, error) {
	p, err := st.Policy(ctx)
	if errors.Is(err, store.ErrNoPolicy) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return p.Roles, nil
}

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

func checkCommonName(s string) error {
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
// host.
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
// DNS name that must pass CheckDNSName.
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

// daemonSANs returns host plus extra, typed, deduplicated, host first.
func daemonSANs(host string, extra []string) ([]SAN, error) {
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

// TTLFor applies the default and the maximum of kind to ttl (0 = default).
func TTLFor(kind store.Kind, ttl time.Duration) (time.Duration, error) {
	def, max := DefaultClientTTL, MaxClientTTL
	if kind == store.KindDaemon {
		def, max = DefaultDaemonTTL, MaxDaemonTTL
	}
	switch {
	case ttl == 0:
		return def, nil
	case ttl < 0:
		return 0, fmt.Errorf("TTL %s is negative: %w", ttl, ErrPolicy)
	case ttl < MinTTL:
		return 0, fmt.Errorf("TTL %s is shorter than the minimum %s: %w", FormatTTL(ttl), FormatTTL(MinTTL), ErrPolicy)
	case ttl > max:
		return 0, fmt.Errorf("TTL %s is above the %s maximum of %s: %w", FormatTTL(ttl), kind, FormatTTL(max), ErrPolicy)
	}
	return ttl, nil
}

// ParseTTL reads a lifetime: a Go duration (90m, 12h) or whole days (30d).
func ParseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("%q is not a duration (use for example 30d, 12h or 90m)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use for example 30d, 12h or 90m)", s)
	}
	return d, nil
}

// FormatTTL prints whole days as Nd and anything else as a Go duration
// without zero trailing units (1m, not 1m0s), the form ParseTTL reads.
func FormatTTL(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	return x509util.GenerateSubjectKeyID(pub)
}
