package main

import "testing"

// Hints must name the binary the user ran: make serve runs ./dockca, which
// is not on the PATH, so "dockca token create" pasted from its banner
// failed (issue 10, section 3).
func TestSelfInvocation(t *testing.T) {
	for argv0, want := range map[string]string{
		"dockca":                "dockca",
		"./dockca":              "./dockca",
		"/usr/local/bin/dockca": "/usr/local/bin/dockca",
		"./my tools/dockca":     `'./my tools/dockca'`,
		"./it's/dockca":         `'./it'\''s/dockca'`,
	} {
		if got := selfInvocation(argv0); got != want {
			t.Errorf("selfInvocation(%q) = %s, want %s", argv0, got, want)
		}
	}
}
