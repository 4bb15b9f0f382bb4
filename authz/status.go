package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// PathStatus is the plugin's status endpoint, on its own socket (root only,
// like the socket dockerd uses). dockerd never calls it.
const PathStatus = "/dockca/status"

// Status is what `dockca authz status` shows.
type Status struct {
	Name string `json:"name"`
	// Revocation is how current the revocation data is; Mode tells local
	// (a dockca home on this host) from remote (a service's CRL).
	Revocation Freshness `json:"revocation"`
	// RevocationAge is the age of that data in seconds.
	RevocationAge float64 `json:"revocation_age_seconds"`
	// Stale: the data could not be confirmed at the last attempt, or is
	// older than max-stale (then every TLS request is denied).
	Stale bool `json:"stale"`
	// Policy says where the roles come from; Roles lists them.
	Policy string   `json:"policy"`
	Roles  []string `json:"roles"`
	// DockerSocket is where existing containers are looked up.
	DockerSocket string `json:"docker_socket,omitempty"`
	DenyLocal    bool   `json:"deny_local"`
	// Groups are the daemon's groups (--group); none: scoped clients are
	// denied, unscoped ones reach it.
	Groups []string `json:"groups"`
	// LastDecision is the time of the last decision, if any.
	LastDecision *time.Time `json:"last_decision,omitempty"`
	Decisions    uint64     `json:"decisions"`
	Denials      uint64     `json:"denials"`
}

// counters are the plugin's decision statistics.
type counters struct {
	last      atomic.Int64 // unix nanoseconds of the last decision
	decisions atomic.Uint64
	denials   atomic.Uint64
}

func (c *counters) note(now time.Time, allow bool) {
	c.last.Store(now.UnixNano())
	c.decisions.Add(1)
	if !allow {
		c.denials.Add(1)
	}
}

// Status reports the plugin's state.
func (a *Authorizer) Status(ctx context.Context) Status {
	pol := a.policy.Load()
	s := Status{Name: a.name, Policy: pol.source, Roles: pol.p.Roles(), DenyLocal: a.denyLocal, Groups: append([]string{}, a.groups...),
		Decisions: a.stats.decisions.Load(), Denials: a.stats.denials.Load()}
	if s.Policy == "" {
		s.Policy = "built-in"
	}
	if ds, ok := a.containers.(*DockerSocket); ok {
		s.DockerSocket = ds.path
	}
	if ns := a.stats.last.Load(); ns != 0 {
		t := time.Unix(0, ns).UTC()
		s.LastDecision = &t
	}
	if fr, ok := a.revoked.(FreshnessReporter); ok {
		s.Revocation = fr.Freshness(ctx)
	} else {
		s.Revocation = Freshness{Mode: "custom", Source: fmt.Sprintf("%T", a.revoked), ConfirmedAt: a.now()}
	}
	if !s.Revocation.ConfirmedAt.IsZero() {
		s.RevocationAge = a.now().Sub(s.Revocation.ConfirmedAt).Seconds()
	}
	s.Stale = s.Revocation.Stale || s.Revocation.ConfirmedAt.IsZero()
	if ms, err := time.ParseDuration(s.Revocation.MaxStale); err == nil && s.RevocationAge > ms.Seconds() {
		s.Stale = true
	}
	return s
}

// FetchStatus asks the plugin serving socket for its status.
func FetchStatus(ctx context.Context, socket string) (*Status, error) {
	hc := unixHTTPClient(socket, 5*time.Second)
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://dockca"+PathStatus, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the plugin at %s does not answer: %w", socket, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the plugin's status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the plugin at %s answered %s (is it a dockca plugin of this version?)", socket, resp.Status)
	}
	var s Status
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("the plugin's status: %w", err)
	}
	return &s, nil
}

// WriteText prints the status for people.
func (s *Status) WriteText(w io.Writer, socket string, now time.Time) {
	state := "current"
	if s.Stale {
		state = "STALE"
	}
	fmt.Fprintf(w, "plugin:          %s on %s (reachable)\n", s.Name, socket)
	fmt.Fprintf(w, "mode:            %s\n", s.Revocation.Mode)
	fmt.Fprintf(w, "revocation data: %s, from %s\n", state, s.Revocation.Source)
	if s.Revocation.ConfirmedAt.IsZero() {
		fmt.Fprintf(w, "                 never confirmed (max-stale %s)\n", s.Revocation.MaxStale)
	} else {
		fmt.Fprintf(w, "                 confirmed %s ago, at %s (max-stale %s)\n",
			now.Sub(s.Revocation.ConfirmedAt).Round(time.Second), s.Revocation.ConfirmedAt.UTC().Format(time.RFC3339), s.Revocation.MaxStale)
	}
	if s.Revocation.Error != "" {
		fmt.Fprintf(w, "                 last error: %s\n", s.Revocation.Error)
	}
	fmt.Fprintf(w, "policy:          %s (roles: %s)\n", s.Policy, strings.Join(s.Roles, ", "))
	if len(s.Groups) > 0 {
		fmt.Fprintf(w, "groups:          %s (clients scoped to none of them are denied)\n", strings.Join(s.Groups, ", "))
	} else {
		fmt.Fprintln(w, "groups:          none (only unscoped client certificates reach this daemon)")
	}
	if s.DockerSocket != "" {
		fmt.Fprintf(w, "containers:      looked up on %s\n", s.DockerSocket)
	}
	if s.LastDecision != nil {
		fmt.Fprintf(w, "last decision:   %s (%d decisions, %d denials since start)\n", s.LastDecision.UTC().Format(time.RFC3339), s.Decisions, s.Denials)
	} else {
		fmt.Fprintln(w, "last decision:   none yet")
	}
}
