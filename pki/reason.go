package pki

import (
	"fmt"
	"strings"
)

// Reason is an RFC 5280 revocation reason dockca accepts.
type Reason struct {
	Name string
	Code int
}

// Reasons lists the accepted --reason values with their RFC 5280 codes.
var Reasons = []Reason{
	{"unspecified", 0},
	{"key-compromise", 1},
	{"affiliation-changed", 3},
	{"superseded", 4},
	{"cessation-of-operation", 5},
}

// ReasonKeyCompromise is the reason that follows a key into its renewals.
var ReasonKeyCompromise = Reason{"key-compromise", 1}

// ParseReason validates a --reason value.
func ParseReason(s string) (Reason, error) {
	for _, r := range Reasons {
		if r.Name == s {
			return r, nil
		}
	}
	names := make([]string, len(Reasons))
	for i, r := range Reasons {
		names[i] = r.Name
	}
	return Reason{}, fmt.Errorf("unknown revocation reason %q (use one of %s): %w", s, strings.Join(names, ", "), ErrPolicy)
}

// ReasonName maps a reason code back to its name.
func ReasonName(code int) string {
	for _, r := range Reasons {
		if r.Code == code {
			return r.Name
		}
	}
	return fmt.Sprintf("reason-%d", code)
}
