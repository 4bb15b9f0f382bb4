package audit

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockca/dockca/pki"
)

// MaxAddresses is the most addresses one audit run may cover, in a single
// range or all targets together: a /16. Larger sweeps are refused before
// anything is sent, so a typo such as 10.0.0.0/8 cannot start a scan of
// someone else's network.
const MaxAddresses = 1 << 16

// DefaultPorts are the ports Docker registered for its API: 2375 plain,
// 2376 TLS.
var DefaultPorts = []int{2375, 2376}

// ErrRangeTooLarge is matched (errors.Is) by *RangeTooLargeError.
var ErrRangeTooLarge = errors.New("range larger than a /16")

// RangeTooLargeError reports a target list that covers more than
// MaxAddresses addresses.
type RangeTooLargeError struct {
	Target   string // the CIDR that is too large, or "" when only the total is
	HostBits int    // for a single range: log2 of its size
	Total    int    // for the total over all targets
}

func (e *RangeTooLargeError) Error() string {
	if e.Target != "" {
		return fmt.Sprintf("target %s: 2^%d addresses, more than the %d allowed (a /16)", e.Target, e.HostBits, MaxAddresses)
	}
	return fmt.Sprintf("targets cover more than %d addresses (a /16) together", MaxAddresses)
}

// Is makes errors.Is(err, ErrRangeTooLarge) true.
func (e *RangeTooLargeError) Is(target error) bool { return target == ErrRangeTooLarge }

// Endpoint is one host and port to audit.
type Endpoint struct {
	// Host is an IP address in canonical form or a host name as given.
	Host string `json:"target"`
	Port int    `json:"port"`
}

// String is host:port, with IPv6 in brackets.
func (e Endpoint) String() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// ParseTargets turns TARGET arguments (host, host:port, IP, [IPv6]:port or
// CIDR) into endpoints: targets without a port get every port in ports.
// It only parses: nothing is resolved or sent. A range larger than a /16,
// or targets covering more than MaxAddresses together, yield a
// *RangeTooLargeError. The result is sorted (see compareEndpoints) and free
// of duplicates.
func ParseTargets(args []string, ports []int) ([]Endpoint, error) {
	if len(args) == 0 {
		return nil, errors.New("parse targets: no target given")
	}
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("parse targets: port %d out of range 1-65535", p)
		}
	}
	type target struct {
		hosts []string
		port  int // 0: use ports
	}
	var targets []target
	total := 0
	for _, arg := range args {
		a := strings.TrimSpace(arg)
		if a == "" {
			return nil, errors.New("parse targets: empty target")
		}
		if strings.Contains(a, "/") {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, fmt.Errorf("parse target %q: not a CIDR range: %w", arg, err)
			}
			hostBits := p.Addr().BitLen() - p.Bits()
			if hostBits > 16 {
				return nil, &RangeTooLargeError{Target: a, HostBits: hostBits}
			}
			total += 1 << hostBits
			if total > MaxAddresses {
				return nil, &RangeTooLargeError{Total: total}
			}
			p = p.Masked()
			var hosts []string
			for addr := p.Addr(); addr.IsValid() && p.Contains(addr); addr = addr.Next() {
				hosts = append(hosts, addr.String())
			}
			targets = append(targets, target{hosts: hosts})
			continue
		}
		host, port, err := splitTarget(a)
		if err != nil {
			return nil, fmt.Errorf("parse target %q: %w", arg, err)
		}
		total++
		if total > MaxAddresses {
			return nil, &RangeTooLargeError{Total: total}
		}
		targets = append(targets, target{hosts: []string{host}, port: port})
	}

	seen := map[Endpoint]bool{}
	var out []Endpoint
	add := func(e Endpoint) {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	for _, t := range targets {
		if t.port == 0 && len(ports) == 0 {
			return nil, fmt.Errorf("parse target %q: no port given and no ports to try", t.hosts[0])
		}
		for _, h := range t.hosts {
			if t.port != 0 {
				add(Endpoint{Host: h, Port: t.port})
				continue
			}
			for _, p := range ports {
				add(Endpoint{Host: h, Port: p})
			}
		}
	}
	slices.SortFunc(out, compareEndpoints)
	return out, nil
}

// splitTarget reads host, IP, host:port, IPv6 or [IPv6]:port. The port is 0
// when none was given.
func splitTarget(a string) (string, int, error) {
	if addr, err := netip.ParseAddr(a); err == nil {
		return addr.String(), 0, nil
	}
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		addr, err := netip.ParseAddr(a[1 : len(a)-1])
		if err != nil {
			return "", 0, fmt.Errorf("bad IPv6 address: %w", err)
		}
		return addr.String(), 0, nil
	}
	host, port := a, 0
	if strings.Contains(a, ":") {
		h, ps, err := net.SplitHostPort(a)
		if err != nil {
			return "", 0, fmt.Errorf("bad host:port: %w", err)
		}
		p, err := strconv.Atoi(ps)
		if err != nil || p < 1 || p > 65535 {
			return "", 0, fmt.Errorf("bad port %q: want 1-65535", ps)
		}
		host, port = h, p
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return addr.String(), port, nil
	}
	// One host-name rule (pki.CheckDNSName), so that a stray flag or URL
	// is reported instead of being looked up.
	if pki.CheckDNSName(host) != nil {
		return "", 0, fmt.Errorf("bad host name %q", host)
	}
	return strings.ToLower(host), port, nil
}

// compareHosts orders IP addresses numerically (IPv4 before IPv6) and puts
// them before host names, which sort by name.
func compareHosts(a, b string) int {
	aa, aerr := netip.ParseAddr(a)
	ba, berr := netip.ParseAddr(b)
	switch {
	case aerr == nil && berr == nil:
		return aa.Compare(ba)
	case aerr == nil:
		return -1
	case berr == nil:
		return 1
	}
	return strings.Compare(a, b)
}

func compareEndpoints(a, b Endpoint) int {
	return cmp.Or(compareHosts(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
}
