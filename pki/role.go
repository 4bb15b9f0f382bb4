package pki

import (
	"crypto/x509"
	"fmt"
	"regexp"
	"slices"
)

// Role is what a client certificate may do. It travels in the certificate
// (as its single Subject OU), so enforcement can read it from the
// certificate alone. Besides the built-in roles, a CA's stored policy (and
// the authorization plugin's policy file) may name roles of its own.
type Role string

// The built-in roles, from narrowest to widest.
const (
	RoleReadonly Role = "readonly"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// Roles lists the built-in roles from narrowest to widest.
var Roles = []Role{RoleReadonly, RoleOperator, RoleAdmin}

// ServiceOU marks dockca serve's own certificate (its Subject OU), so that
// clients of the service accept only it as the service and not any daemon
// certificate of the same CA that happens to carry the service's name.
// Daemon certificates carry no OU and client roles are never this value.
const ServiceOU = "dockca-service"

// AnyRole, given as the extra roles of a check made before the CA (and so
// its stored policy) is at hand, accepts every well-formed role name; the
// CA checks the role against its policy when it issues.
var AnyRole = []Role{"*"}

// RoleNameRE is the form of a role name, for certificates, the CA's stored
// policy and the authorization plugin's policy files alike.
var RoleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// CheckRoleName checks only the form of a role name.
func CheckRoleName(role Role) error {
	if !RoleNameRE.MatchString(string(role)) {
		return fmt.Errorf("role %q is not a role name (lowercase letters, digits and . _ -, at most 64 characters): %w", role, ErrPolicy)
	}
	return nil
}

// CheckRole validates a --role value against the built-in roles and extra,
// the roles of the CA's stored policy.
func CheckRole(role Role, extra ...Role) error {
	if err := CheckRoleName(role); err != nil {
		return err
	}
	if role.Builtin() {
		return nil
	}
	for _, r := range extra {
		if r == role || r == AnyRole[0] {
			return nil
		}
	}
	return fmt.Errorf("unknown role %q (use readonly, operator or admin, or a role of the policy stored with 'dockca policy set'): %w", role, ErrPolicy)
}

// Builtin reports whether r is one of the built-in roles.
func (r Role) Builtin() bool { return slices.Contains(Roles, r) }

// Rank orders the built-in roles from narrowest (0) to widest; ok is false
// for a role that is not built in, which cannot be ordered.
func (r Role) Rank() (rank int, ok bool) {
	i := slices.Index(Roles, r)
	return i, i >= 0
}

// RoleOf reads the role a dockca client certificate carries: its single
// Subject OU. Empty when there is none or more than one.
func RoleOf(cert *x509.Certificate) Role {
	if len(cert.Subject.OrganizationalUnit) != 1 {
		return ""
	}
	return Role(cert.Subject.OrganizationalUnit[0])
}
