package audit

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseTargets(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		ports []int
		want  []string // endpoint strings, in order
		err   string   // substring of the error, "" for none
		large bool     // want ErrRangeTooLarge
	}{
		{name: "ip with default ports", args: []string{"127.0.0.1"}, ports: DefaultPorts, want: []string{"127.0.0.1:2375", "127.0.0.1:2376"}},
		{name: "ip:port ignores ports", args: []string{"127.0.0.1:12376"}, ports: DefaultPorts, want: []string{"127.0.0.1:12376"}},
		{name: "host name", args: []string{"LocalHost"}, ports: []int{2376}, want: []string{"localhost:2376"}},
		{name: "host:port", args: []string{"docker-1.internal:2376"}, want: []string{"docker-1.internal:2376"}},
		{name: "ipv6", args: []string{"::1", "[::1]:9"}, ports: []int{2376}, want: []string{"[::1]:9", "[::1]:2376"}},
		{name: "bracketed ipv6 without port", args: []string{"[::1]"}, ports: []int{2376}, want: []string{"[::1]:2376"}},
		{name: "cidr /30 unmasked", args: []string{"127.0.0.9/30"}, ports: []int{2376},
			want: []string{"127.0.0.8:2376", "127.0.0.9:2376", "127.0.0.10:2376", "127.0.0.11:2376"}},
		{name: "sorted numerically, ips before names, deduplicated",
			args: []string{"localhost:1", "127.0.0.10:1", "127.0.0.9:1", "127.0.0.9:1", "127.0.0.8/31"}, ports: []int{1},
			want: []string{"127.0.0.8:1", "127.0.0.9:1", "127.0.0.10:1", "localhost:1"}},
		{name: "/16 is allowed", args: []string{"127.1.0.0/16"}, ports: []int{1}},
		{name: "/15 refused", args: []string{"127.0.0.0/15"}, ports: []int{1}, large: true},
		{name: "/8 refused", args: []string{"127.0.0.0/8"}, ports: []int{1}, large: true},
		{name: "ipv6 /64 refused", args: []string{"::1/64"}, ports: []int{1}, large: true},
		{name: "two /16 together refused", args: []string{"127.1.0.0/16", "127.2.0.0/16"}, ports: []int{1}, large: true},
		{name: "/16 plus one host refused", args: []string{"127.1.0.0/16", "127.0.0.1"}, ports: []int{1}, large: true},
		{name: "no targets", err: "no target"},
		{name: "empty target", args: []string{" "}, ports: []int{1}, err: "empty target"},
		{name: "bad cidr", args: []string{"127.0.0.1/33"}, ports: []int{1}, err: "not a CIDR"},
		{name: "url", args: []string{"tcp://127.0.0.1:2376"}, ports: []int{1}, err: "parse target"},
		{name: "flag-like", args: []string{"-json"}, ports: []int{1}, err: "bad host name"},
		{name: "bad port", args: []string{"127.0.0.1:70000"}, err: "bad port"},
		{name: "zero port", args: []string{"127.0.0.1:0"}, err: "bad port"},
		{name: "bad ports option", args: []string{"127.0.0.1"}, ports: []int{0}, err: "out of range"},
		{name: "no ports at all", args: []string{"127.0.0.1"}, err: "no ports"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eps, err := ParseTargets(tc.args, tc.ports)
			switch {
			case tc.large:
				var rerr *RangeTooLargeError
				if !errors.Is(err, ErrRangeTooLarge) || !errors.As(err, &rerr) {
					t.Fatalf("err = %v, want a *RangeTooLargeError", err)
				}
				if eps != nil {
					t.Fatalf("got endpoints with a refused range")
				}
				return
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if tc.want == nil {
				if len(eps) != MaxAddresses {
					t.Fatalf("got %d endpoints, want %d", len(eps), MaxAddresses)
				}
				return
			}
			var got []string
			for _, e := range eps {
				got = append(got, e.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRangeTooLargeMessage(t *testing.T) {
	_, err := ParseTargets([]string{"127.0.0.0/8"}, []int{2376})
	if got, want := err.Error(), "target 127.0.0.0/8: 2^24 addresses, more than the 65536 allowed (a /16)"; got != want {
		t.Fatalf("error %q, want %q", got, want)
	}
}
