package pki

import (
	"os"
	"strings"
	"unicode"
)

// MaxHolderLen bounds a holder label (see HolderLabel).
const MaxHolderLen = 160

// HolderLabel cleans where a certificate went, as a client or an admin
// command describes it ("docker context prod on laptop-7", "/etc/docker/tls
// on web-1"), for the CA's record: shown by show and rotate status, never
// trusted for anything. Control characters become spaces, runs of spaces
// one, and the result is cut to MaxHolderLen runes.
func HolderLabel(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > MaxHolderLen {
		s = string(r[:MaxHolderLen])
	}
	return s
}

// HolderHere is what (a folder, "docker context prod") on this host, as a
// holder label: "/etc/docker/tls on web-1".
func HolderHere(what string) string {
	if host, err := os.Hostname(); err == nil && host != "" {
		what += " on " + host
	}
	return HolderLabel(what)
}
