package audit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Finding is one problem (or, with Info, one reassurance) at one endpoint.
type Finding struct {
	Target   string   `json:"target"`
	Port     int      `json:"port"`
	Severity Severity `json:"severity"`
	// ID is a stable machine name for the check (see the package doc).
	ID string `json:"id"`
	// Finding is the one-line human description.
	Finding string `json:"finding"`
	Detail  string `json:"detail"`
}

// Port states in TargetResult.State.
const (
	StateOpen        = "open"
	StateClosed      = "closed"      // connection refused
	StateFiltered    = "filtered"    // no answer within the timeout
	StateUnreachable = "unreachable" // no route, host down
	StateError       = "error"       // could not be audited (e.g. name does not resolve)
	StateSkipped     = "skipped"     // not reached before the deadline
)

// Protocols in TargetResult.Protocol.
const (
	ProtoTLS     = "tls"
	ProtoHTTP    = "http"
	ProtoUnknown = "unknown"
)

// Engine is what a Docker API told about itself on GET /version.
type Engine struct {
	Version    string `json:"version,omitempty"`
	APIVersion string `json:"api_version,omitempty"`
	OS         string `json:"os,omitempty"`
	Arch       string `json:"arch,omitempty"`
}

func (e *Engine) describe() string {
	if e == nil {
		return ""
	}
	var parts []string
	for _, kv := range [][2]string{{"engine", e.Version}, {"os", e.OS}, {"arch", e.Arch}, {"api", e.APIVersion}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}
	return strings.Join(parts, ", ")
}

// TargetResult is what was learned about one endpoint, findings aside.
type TargetResult struct {
	Target   string `json:"target"`
	Port     int    `json:"port"`
	State    string `json:"state"`
	Protocol string `json:"protocol,omitempty"`
	// Docker is true when the endpoint identified itself as a Docker API.
	Docker bool `json:"docker,omitempty"`
	// ClientCert is "required", "optional" (requested, not required) or
	// "not requested" for TLS endpoints, when known.
	ClientCert string `json:"client_cert,omitempty"`
	TLSVersion string `json:"tls_version,omitempty"`
	// Service is "dockca gate" when the endpoint is a dockca gate.
	Service string  `json:"service,omitempty"`
	Engine  *Engine `json:"engine,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// Report is the outcome of Run: every endpoint and every finding, in a
// deterministic order so that output can be compared and golden-tested.
type Report struct {
	Targets  []TargetResult `json:"targets"`
	Findings []Finding      `json:"findings"`
}

// sort orders targets by host (IPs numerically) and port, findings also by
// descending severity, then ID.
func (r *Report) sort() {
	slices.SortFunc(r.Targets, func(a, b TargetResult) int {
		return cmp.Or(compareHosts(a.Target, b.Target), cmp.Compare(a.Port, b.Port))
	})
	slices.SortFunc(r.Findings, func(a, b Finding) int {
		return cmp.Or(compareHosts(a.Target, b.Target), cmp.Compare(a.Port, b.Port),
			cmp.Compare(b.Severity, a.Severity), strings.Compare(a.ID, b.ID), strings.Compare(a.Detail, b.Detail))
	})
}

// Exceeds reports whether any finding is at or above failOn. With None it
// is always false.
func (r *Report) Exceeds(failOn Severity) bool {
	if r == nil || failOn == None {
		return false
	}
	for _, f := range r.Findings {
		if f.Severity >= failOn {
			return true
		}
	}
	return false
}

// Exit codes of `dockca audit`.
const (
	ExitOK       = 0
	ExitError    = 1
	ExitFindings = 3
)

// ExitCode maps the result of Run to the command's exit status: 3 when a
// finding at or above failOn was made (even if the run was also incomplete:
// what was found is certain and the more urgent news), 1 when the run failed
// or was incomplete, else 0.
func ExitCode(r *Report, runErr error, failOn Severity) int {
	switch {
	case r.Exceeds(failOn):
		return ExitFindings
	case runErr != nil || r == nil:
		return ExitError
	}
	return ExitOK
}

// Counts returns how many endpoints are in each state.
func (r *Report) Counts() map[string]int {
	c := map[string]int{}
	for _, t := range r.Targets {
		c[t.State]++
	}
	return c
}

// WriteTable writes the findings as an aligned table (target, port,
// severity, finding, detail) and a one-line summary of the endpoints.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tPORT\tSEVERITY\tFINDING\tDETAIL")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", f.Target, f.Port, f.Severity, f.Finding, oneLine(f.Detail))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	if len(r.Findings) == 0 {
		if _, err := fmt.Fprintln(w, "no findings"); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
	}
	counts := r.Counts()
	noun := " endpoints"
	if len(r.Targets) == 1 {
		noun = " endpoint"
	}
	parts := []string{strconv.Itoa(len(r.Targets)) + noun}
	for _, s := range []string{StateOpen, StateClosed, StateFiltered, StateUnreachable, StateError, StateSkipped} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	if _, err := fmt.Fprintf(w, "audited %s\n", strings.Join(parts, ", ")); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// WriteJSON writes {"targets":[...],"findings":[...]} with stable snake_case
// field names; empty lists are written as [] rather than null.
func (r *Report) WriteJSON(w io.Writer) error {
	out := *r
	if out.Targets == nil {
		out.Targets = []TargetResult{}
	}
	if out.Findings == nil {
		out.Findings = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// oneLine keeps a detail (which may quote a server) from breaking the table.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
