package pki

import (
	"strings"
	"testing"
	"time"
)

func TestTTLPolicy(t *testing.T) {
	day := 24 * time.Hour
	cases := []struct {
		kind Kind
		in   time.Duration
		want time.Duration
		err  string
	}{
		{KindClient, 0, 30 * day, ""},
		{KindDaemon, 0, 90 * day, ""},
		{KindClient, 90 * day, 90 * day, ""},
		{KindClient, 90*day + time.Second, 0, "above the client maximum of 90d"},
		{KindDaemon, 365 * day, 365 * day, ""},
		{KindDaemon, 366 * day, 0, "above the daemon maximum of 365d"},
		{KindClient, time.Minute, 0, "shorter than the minimum"},
		{KindClient, -time.Hour, 0, "negative"},
	}
	for _, c := range cases {
		got, err := TTLFor(c.kind, c.in)
		if c.err == "" && (err != nil || got != c.want) {
			t.Errorf("TTLFor(%s, %s) = %s, %v", c.kind, c.in, got, err)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("TTLFor(%s, %s) error %v, want %q", c.kind, c.in, err, c.err)
		}
	}
	for in, want := range map[string]time.Duration{"30d": 30 * day, "12h": 12 * time.Hour, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute} {
		if got, err := ParseTTL(in); err != nil || got != want {
			t.Errorf("ParseTTL(%q) = %s, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "soon", "3x", "-d", "99999d"} {
		if _, err := ParseTTL(in); err == nil {
			t.Errorf("ParseTTL(%q) accepted", in)
		}
	}
}
