package store

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
)

// A renewed certificate is superseded while unexpired and unrevoked; the
// renewal itself stays valid; revoked and expired take precedence.
func TestSupersededStatus(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Now()
	first := rec(1, "alice", pki.KindClient, now.Add(24*time.Hour))
	second := rec(2, "alice", pki.KindClient, now.Add(48*time.Hour))
	second.RenewedFrom = first.Serial
	third := rec(3, "alice", pki.KindClient, now.Add(72*time.Hour))
	third.RenewedFrom = second.Serial
	for _, c := range []*Certificate{first, second, third} {
		if err := s.PutCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	status := func(n int64) (Status, string) {
		c, err := s.Certificate(ctx, big.NewInt(n))
		if err != nil {
			t.Fatal(err)
		}
		return c.Status(now), c.SupersededBy
	}
	for n, want := range map[int64][2]string{1: {"superseded", second.Serial}, 2: {"superseded", third.Serial}, 3: {"valid", ""}} {
		if st, by := status(n); string(st) != want[0] || by != want[1] {
			t.Errorf("certificate %d: %s by %q, want %v", n, st, by, want)
		}
	}
	got, err := s.List(ctx, Filter{Status: StatusSuperseded, Now: now})
	if err != nil || len(got) != 2 || got[0].Serial != first.Serial || got[1].Serial != second.Serial {
		t.Fatalf("List superseded: %v %v", got, err)
	}
	if err := s.Revoke(ctx, big.NewInt(1), &Revocation{Reason: "superseded", ReasonCode: 4, RevokedAt: now}); err != nil {
		t.Fatal(err)
	}
	if st, _ := status(1); st != StatusRevoked {
		t.Errorf("a revoked predecessor is %s", st)
	}
	if c, _ := s.Certificate(ctx, big.NewInt(2)); c.Status(now.Add(49*time.Hour)) != StatusExpired {
		t.Errorf("an expired predecessor is %s", c.Status(now.Add(49*time.Hour)))
	}
}

// Serials are stored as their bytes, which may contain 0, the renewals
// index's separator: serial 0x0100 renewed into 0x05 gives the entry
// 01 00 00 05, which also starts with serial 0x01 and a 0. Neither check
// nor the renewal lookups may read it as serial 0x01's.
func TestRenewalIndexWithZeroBytes(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Now()
	one := rec(0x01, "alice", pki.KindClient, now.Add(24*time.Hour))
	from := rec(0x0100, "bob", pki.KindClient, now.Add(24*time.Hour))
	to := rec(0x05, "bob", pki.KindClient, now.Add(48*time.Hour))
	to.RenewedFrom = from.Serial
	for _, c := range []*Certificate{one, from, to} {
		if err := s.PutCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems {
		if p.Where != "ca" { // no CA is stored in this test
			t.Errorf("check: %s: %s", p.Where, p.Problem)
		}
	}
	if c, err := s.Certificate(ctx, big.NewInt(0x01)); err != nil || c.SupersededBy != "" || c.Status(now) != StatusValid {
		t.Fatalf("serial 01 took 0100's renewal: %+v %v", c, err)
	}
	if c, err := s.Certificate(ctx, big.NewInt(0x0100)); err != nil || c.SupersededBy != to.Serial {
		t.Fatalf("serial 0100's successor: %+v %v", c, err)
	}
	if rs, err := s.RenewalsOf(ctx, one.Serial, now); err != nil || len(rs) != 0 {
		t.Fatalf("renewals of 01: %v %v", rs, err)
	}
	if rs, err := s.RenewalsOf(ctx, from.Serial, now); err != nil || len(rs) != 1 || rs[0].Serial != to.Serial {
		t.Fatalf("renewals of 0100: %v %v", rs, err)
	}
}
