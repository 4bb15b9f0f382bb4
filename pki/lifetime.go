package pki

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Certificate lifetimes: defaults and the maximums that refuse anything
// longer.
const (
	DefaultDaemonTTL = 90 * 24 * time.Hour
	DefaultClientTTL = 30 * 24 * time.Hour
	MaxDaemonTTL     = 365 * 24 * time.Hour
	MaxClientTTL     = 90 * 24 * time.Hour
	MinTTL           = 5 * time.Minute
)

// Token lifetimes.
const (
	DefaultTokenTTL = time.Hour
	MaxTokenTTL     = 24 * time.Hour
	MinTokenTTL     = time.Minute
)

// MaxTTL is the longest lifetime a certificate of kind may have.
func MaxTTL(kind Kind) time.Duration {
	if kind == KindDaemon {
		return MaxDaemonTTL
	}
	return MaxClientTTL
}

// TTLFor applies the default and the maximum of kind to ttl (0 = default).
func TTLFor(kind Kind, ttl time.Duration) (time.Duration, error) {
	def, max := DefaultClientTTL, MaxTTL(kind)
	if kind == KindDaemon {
		def = DefaultDaemonTTL
	}
	switch {
	case ttl == 0:
		return def, nil
	case ttl < 0:
		return 0, fmt.Errorf("TTL %s is negative: %w", ttl, ErrPolicy)
	case ttl < MinTTL:
		return 0, fmt.Errorf("TTL %s is shorter than the minimum %s: %w", FormatTTL(ttl), FormatTTL(MinTTL), ErrPolicy)
	case ttl > max:
		return 0, fmt.Errorf("TTL %s is above the %s maximum of %s: %w", FormatTTL(ttl), kind, FormatTTL(max), ErrPolicy)
	}
	return ttl, nil
}

// ParseTTL reads a lifetime: a Go duration (90m, 12h) or whole days (30d).
func ParseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("%q is not a duration (use for example 30d, 12h or 90m)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use for example 30d, 12h or 90m)", s)
	}
	return d, nil
}

// FormatTTL prints whole days as Nd and anything else as a Go duration
// without zero trailing units (1m, not 1m0s), the form ParseTTL reads.
func FormatTTL(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
