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

// reasonNames spell every RFC 5280 reason code the way the revoke command
// takes the ones it accepts (code 7 is unused).
var reasonNames = map[int]string{
	0: "unspecified", 1: "key-compromise", 2: "ca-compromise", 3: "affiliation-changed", 4: "superseded",
	5: "cessation-of-operation", 6: "certificate-hold", 8: "remove-from-crl", 9: "privilege-withdrawn", 10: "aa-compromise",
}

// ReasonName maps a reason code, found in a CRL, back to its name.
func ReasonName(code int) string {
	if n, ok := reasonNames[code]; ok {
		return n
	}
	return fmt.Sprintf("reason-%d", code)
}
