package serve

import "testing"

func TestLimiterKeyBucketsIPv6By64(t *testing.T) {
	if a, b := limiterKey("2001:db8::1"), limiterKey("2001:db8::ffff:1"); a != b || a != "2001:db8::/64" {
		t.Fatalf("two addresses of one /64 got %q and %q", a, b)
	}
	if a, b := limiterKey("2001:db8:0:1::1"), limiterKey("2001:db8::1"); a == b {
		t.Fatal("different /64s share a bucket")
	}
	if k := limiterKey("127.0.0.1"); k != "127.0.0.1" {
		t.Fatalf("IPv4 key %q", k)
	}
}
