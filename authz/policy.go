package authz

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/dockca/dockca/pki"
	"go.yaml.in/yaml/v3"
)

//go:embed builtin-policy.yaml
var builtinPolicyYAML []byte

// BuiltinPolicyYAML returns the documented built-in roles, the defaults that a
// --policy file overrides or extends.
func BuiltinPolicyYAML() []byte { return bytes.Clone(builtinPolicyYAML) }

// ErrPolicy marks an invalid policy file.
var ErrPolicy = errors.New("invalid policy")

// PolicyFile is the YAML form of a policy (see builtin-policy.yaml).
type PolicyFile struct {
	// AllowedHostPaths may be bind-mounted by roles whose rules run the
	// container-create and volume-create checks; a path allows itself and
	// everything below it (after resolving symlinks on this host, when the
	// create is judged; the kernel resolves them again at each start, so
	// only list directories no container can write to).
	AllowedHostPaths []string `yaml:"allowed_host_paths"`
	// AllowedLogDrivers are log drivers non-admin containers may use
	// besides json-file, local, journald and none (which never make
	// dockerd connect anywhere).
	AllowedLogDrivers []string             `yaml:"allowed_log_drivers"`
	Roles             map[string]*RoleSpec `yaml:"roles"`
	// GroupRoles narrows a role on the daemons of a group: group -> (the
	// certificate's role -> the role that applies there). A client reaches
	// a daemon through the groups both its scope and the daemon have (all
	// the daemon's groups when it is unscoped); see RoleOn.
	GroupRoles map[string]map[string]string `yaml:"group_roles"`
}

// RoleSpec is one role in a policy file.
type RoleSpec struct {
	// Extends names a role whose rules are tried after this role's own.
	Extends string `yaml:"extends"`
	Rules   []Rule `yaml:"rules"`
}

// Rule matches requests by method and path and allows or denies them.
type Rule struct {
	Name    string   `yaml:"name"`
	Action  string   `yaml:"action"`  // "allow" or "deny"
	Methods []string `yaml:"methods"` // empty: any method
	Paths   []string `yaml:"paths"`   // required; see matchPath
	// Checks are built-in body/query inspections run on an allow.
	Checks []string `yaml:"checks"`
	// DenyIf turns an allow into a denial when a condition holds.
	DenyIf []Condition `yaml:"deny_if"`
	// Message explains a deny rule to the user.
	Message string `yaml:"message"`
}

// Condition tests one body field ("HostConfig.Runtime", matched like Go's
// JSON decoder: exact name first, otherwise case-insensitive) or query
// parameter ("query.networkmode").
type Condition struct {
	Field   string `yaml:"field"`
	Present bool   `yaml:"present"` // holds when the field is set to a non-zero value
	Equals  any    `yaml:"equals"`  // holds when the field equals this scalar
	Message string `yaml:"message"`
}

// Policy is a compiled set of roles, ready for decisions.
type Policy struct {
	roles      map[string][]compiledRule
	groupRoles map[string]map[string]string
	limits     hostLimits
}

type compiledRule struct {
	Rule
	methods  []string
	patterns [][]string
	checks   []check
}

// logDriverName is a built-in driver or a plugin reference ("org/name:tag").
var logDriverName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$`)

// BuiltinPolicy returns the built-in roles.
func BuiltinPolicy() *Policy {
	p, err := LoadPolicy(nil)
	if err != nil {
		panic("authz: built-in policy is invalid: " + err.Error())
	}
	return p
}

// LoadPolicy reads a policy file and compiles it over the built-in roles. A
// nil reader gives the built-in roles alone. Unknown keys, checks and
// roles are errors: a typo must not silently widen or narrow access.
func LoadPolicy(r io.Reader) (*Policy, error) {
	base, err := parsePolicyFile(bytes.NewReader(builtinPolicyYAML))
	if err != nil {
		return nil, err
	}
	if r != nil {
		over, err := parsePolicyFile(r)
		if err != nil {
			return nil, err
		}
		base.AllowedHostPaths = append(base.AllowedHostPaths, over.AllowedHostPaths...)
		base.AllowedLogDrivers = append(base.AllowedLogDrivers, over.AllowedLogDrivers...)
		for name, role := range over.Roles {
			base.Roles[name] = role
		}
		base.GroupRoles = over.GroupRoles
	}
	return compilePolicy(base)
}

func parsePolicyFile(r io.Reader) (*PolicyFile, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var f PolicyFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if f.Roles == nil {
		f.Roles = map[string]*RoleSpec{}
	}
	return &f, nil
}

func compilePolicy(f *PolicyFile) (*Policy, error) {
	p := &Policy{roles: map[string][]compiledRule{}}
	for _, hp := range f.AllowedHostPaths {
		if !path.IsAbs(hp) || path.Clean(hp) == "/" {
			return nil, fmt.Errorf("%w: allowed_host_paths entry %q must be an absolute path other than /", ErrPolicy, hp)
		}
		p.limits.hostPaths = append(p.limits.hostPaths, path.Clean(hp))
	}
	p.limits.logDrivers = slices.Clone(defaultLogDrivers)
	for _, d := range f.AllowedLogDrivers {
		if !logDriverName.MatchString(d) {
			return nil, fmt.Errorf("%w: allowed_log_drivers entry %q is not a log driver name", ErrPolicy, d)
		}
		if !slices.Contains(p.limits.logDrivers, d) {
			p.limits.logDrivers = append(p.limits.logDrivers, d)
		}
	}
	compiled := map[string][]compiledRule{}
	for name, spec := range f.Roles {
		if !pki.RoleNameRE.MatchString(name) {
			return nil, fmt.Errorf("%w: role name %q (lowercase letters, digits, . _ -)", ErrPolicy, name)
		}
		if spec == nil {
			return nil, fmt.Errorf("%w: role %s is empty", ErrPolicy, name)
		}
		var rules []compiledRule
		for i, r := range spec.Rules {
			cr, err := compileRule(r)
			if err != nil {
				return nil, fmt.Errorf("%w: role %s rule %d (%s): %v", ErrPolicy, name, i+1, r.Name, err)
			}
			rules = append(rules, cr)
		}
		compiled[name] = rules
	}
	// Resolve extends chains, refusing cycles and unknown roles.
	for name := range f.Roles {
		seen := map[string]bool{name: true}
		rules := slices.Clone(compiled[name])
		for base := f.Roles[name].Extends; base != ""; base = f.Roles[base].Extends {
			if seen[base] {
				return nil, fmt.Errorf("%w: role %s extends itself through %s", ErrPolicy, name, base)
			}
			if _, ok := f.Roles[base]; !ok {
				return nil, fmt.Errorf("%w: role %s extends unknown role %s", ErrPolicy, name, base)
			}
			seen[base] = true
			rules = append(rules, compiled[base]...)
		}
		p.roles[name] = rules
	}
	for group, m := range f.GroupRoles {
		if err := pki.CheckGroupName(group); err != nil {
			return nil, fmt.Errorf("%w: group_roles: group %q is not a group name (lowercase letters, digits and . _ -)", ErrPolicy, group)
		}
		for from, to := range m {
			if !pki.RoleNameRE.MatchString(from) {
				return nil, fmt.Errorf("%w: group_roles.%s: role name %q (lowercase letters, digits, . _ -)", ErrPolicy, group, from)
			}
			if _, ok := p.roles[to]; !ok {
				return nil, fmt.Errorf("%w: group_roles.%s.%s: unknown role %q", ErrPolicy, group, from, to)
			}
		}
	}
	p.groupRoles = f.GroupRoles
	return p, nil
}

// RoleOn returns the role a certificate of role has on a daemon it
// reaches through groups (pki.Through): each group's group_roles entry for
// role, or role itself where a group has none. When the groups give
// different built-in roles the narrowest applies; different roles that
// are not all built-in cannot be ordered, so that is an error (fail
// closed).
func (p *Policy) RoleOn(role pki.Role, through []string) (pki.Role, error) {
	out := pki.Role("")
	var seen []pki.Role
	for _, g := range through {
		r := role
		if to, ok := p.groupRoles[g][string(role)]; ok {
			r = pki.Role(to)
		}
		if out == "" {
			out = r
		}
		if !slices.Contains(seen, r) {
			seen = append(seen, r)
		}
	}
	if len(seen) <= 1 {
		if out == "" {
			return role, nil
		}
		return out, nil
	}
	for _, r := range seen {
		rank, ok := r.Rank()
		if !ok {
			names := make([]string, len(seen))
			for i, s := range seen {
				names[i] = string(s)
			}
			return "", fmt.Errorf("role %s maps to %s on this daemon's groups %s, and the policy cannot tell which is narrower",
				role, strings.Join(names, " and "), strings.Join(through, ","))
		}
		if outRank, _ := out.Rank(); rank < outRank {
			out = r
		}
	}
	return out, nil
}

func compileRule(r Rule) (compiledRule, error) {
	cr := compiledRule{Rule: r}
	if r.Name == "" {
		return cr, errors.New("a rule needs a name (it is written to the audit log)")
	}
	if r.Action != "allow" && r.Action != "deny" {
		return cr, fmt.Errorf("action %q: want allow or deny", r.Action)
	}
	for _, m := range r.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "" {
			return cr, errors.New("empty method")
		}
		cr.methods = append(cr.methods, m)
	}
	if len(r.Paths) == 0 {
		return cr, errors.New("a rule needs paths (use \"/**\" for all)")
	}
	for _, pat := range r.Paths {
		if !strings.HasPrefix(pat, "/") {
			return cr, fmt.Errorf("path pattern %q must start with /", pat)
		}
		cr.patterns = append(cr.patterns, splitPath(pat))
	}
	for _, name := range r.Checks {
		c, ok := checks[name]
		if !ok {
			return cr, fmt.Errorf("unknown check %q (known: %s)", name, strings.Join(checkNames(), ", "))
		}
		cr.checks = append(cr.checks, c)
	}
	if r.Action == "deny" && (len(r.Checks) > 0 || len(r.DenyIf) > 0) {
		return cr, errors.New("checks and deny_if only make sense on allow rules")
	}
	for _, c := range r.DenyIf {
		if c.Field == "" || c.Field == "query." {
			return cr, errors.New("deny_if needs a field")
		}
		if !c.Present && c.Equals == nil {
			return cr, fmt.Errorf("deny_if on %s needs present: true or equals", c.Field)
		}
		switch c.Equals.(type) {
		case nil, string, bool, int, float64:
		default:
			return cr, fmt.Errorf("deny_if on %s: equals must be a scalar", c.Field)
		}
	}
	return cr, nil
}

func checkNames() []string {
	var names []string
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Roles lists the role names the policy knows.
func (p *Policy) Roles() []string {
	var names []string
	for n := range p.roles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func splitPath(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

// matchPath matches path segments against a pattern: "*" is one non-empty
// segment, "**" zero or more segments, anything else is literal.
func matchPath(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			for i := 0; i <= len(segs); i++ {
				if matchPath(rest, segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if pat[0] != "*" && pat[0] != segs[0] {
			return false
		}
		if pat[0] == "*" && segs[0] == "" {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}

func (r *compiledRule) matches(method string, segs []string) bool {
	if len(r.methods) > 0 && !slices.Contains(r.methods, method) {
		return false
	}
	for _, p := range r.patterns {
		if matchPath(p, segs) {
			return true
		}
	}
	return false
}
