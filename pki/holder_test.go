package pki

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// A holder label is a client's free text shown in tables: no control
// character (no forged line or column), one space between words, bounded.
func TestHolderLabel(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"docker context prod on laptop-7", "docker context prod on laptop-7"},
		{"  /etc/docker/tls \t on\nweb-1\r\n", "/etc/docker/tls on web-1"},
		{"evil\x1b[31mred\x00", "evil [31mred"},
		{"", ""},
		{"\n\t", ""},
		{"café on hôte", "café on hôte"},
	} {
		if got := HolderLabel(c.in); got != c.want {
			t.Errorf("HolderLabel(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := HolderLabel(strings.Repeat("é", 500))
	if utf8.RuneCountInString(long) != MaxHolderLen || !utf8.ValidString(long) {
		t.Errorf("a long label is %d runes (valid UTF-8: %v), want %d", utf8.RuneCountInString(long), utf8.ValidString(long), MaxHolderLen)
	}
	if h := HolderHere("/srv/tls"); !strings.HasPrefix(h, "/srv/tls on ") {
		t.Errorf("HolderHere = %q", h)
	}
}
