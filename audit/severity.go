package audit

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Severity orders findings; a higher value is worse. None is not a finding
// severity: as a --fail-on threshold it means "never fail".
type Severity int

const (
	None Severity = iota
	Info
	Medium
	High
	Critical
)

var severityNames = map[Severity]string{
	None:     "none",
	Info:     "info",
	Medium:   "medium",
	High:     "high",
	Critical: "critical",
}

func (s Severity) String() string {
	if n, ok := severityNames[s]; ok {
		return n
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// ParseSeverity reads a --fail-on value: critical, high, medium, info or none
// (case-insensitive).
func ParseSeverity(s string) (Severity, error) {
	want := strings.ToLower(strings.TrimSpace(s))
	for sev, name := range severityNames {
		if name == want {
			return sev, nil
		}
	}
	return None, fmt.Errorf("parse severity %q: want critical, high, medium, info or none", s)
}

// MarshalJSON writes the severity as its lowercase name so pipelines can
// match on "critical" rather than a number.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads what MarshalJSON wrote.
func (s *Severity) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return fmt.Errorf("parse severity: %w", err)
	}
	v, err := ParseSeverity(name)
	if err != nil {
		return err
	}
	*s = v
	return nil
}
