package admin

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

func accessFixture(clients, daemons int, now time.Time) []*store.Certificate {
	var certs []*store.Certificate
	groups := []string{"staging", "prod", "edge"}
	for i := range daemons {
		certs = append(certs, &store.Certificate{Serial: fmt.Sprintf("d%05d", i), Name: fmt.Sprintf("host%d", i), Kind: pki.KindDaemon,
			Groups: []string{groups[i%3]}, NotAfter: now.Add(90 * 24 * time.Hour)})
	}
	for i := range clients {
		c := &store.Certificate{Serial: fmt.Sprintf("c%05d", i), Name: fmt.Sprintf("user%d", i), Kind: pki.KindClient,
			Role: []pki.Role{"readonly", "operator", "admin"}[i%3], NotAfter: now.Add(30 * 24 * time.Hour)}
		if i%2 == 1 {
			c.Groups = []string{groups[i%3]}
		}
		certs = append(certs, c)
	}
	return certs
}

func TestAccessMap(t *testing.T) {
	now := time.Now()
	pol, err := authz.LoadPolicy(strings.NewReader("roles:\n  odd:\n    rules: []\ngroup_roles:\n  prod: {operator: readonly}\n"))
	if err != nil {
		t.Fatal(err)
	}
	certs := []*store.Certificate{
		{Serial: "d1", Name: "stg", Kind: pki.KindDaemon, Groups: []string{"staging"}, NotAfter: now.Add(48 * time.Hour)},
		{Serial: "d2", Name: "prd", Kind: pki.KindDaemon, Groups: []string{"prod"}, NotAfter: now.Add(72 * time.Hour)},
		{Serial: "d3", Name: "bare", Kind: pki.KindDaemon, NotAfter: now.Add(72 * time.Hour)},
		{Serial: "d4", Name: "old", Kind: pki.KindDaemon, Groups: []string{"prod"}, NotAfter: now.Add(-time.Hour)},
		{Serial: "s1", Name: "svc", Kind: pki.KindService, NotAfter: now.Add(72 * time.Hour)},
		{Serial: "c1", Name: "ops", Kind: pki.KindClient, Role: "operator", NotAfter: now.Add(24 * time.Hour)},
		{Serial: "c2", Name: "dev", Kind: pki.KindClient, Role: "operator", Groups: []string{"staging"}, NotAfter: now.Add(96 * time.Hour)},
		{Serial: "c3", Name: "gone", Kind: pki.KindClient, Role: "admin", NotAfter: now.Add(96 * time.Hour), Revocation: &store.Revocation{}},
		{Serial: "c4", Name: "weird", Kind: pki.KindClient, Role: "nosuchrole", NotAfter: now.Add(96 * time.Hour)},
	}
	got := AccessMap(certs, pol, api.AccessRequest{}, now)
	var rows []string
	for _, e := range got {
		rows = append(rows, fmt.Sprintf("%s/%s %s %s/%s %v %s", e.Client, e.ClientSerial, e.Role, e.Daemon, e.DaemonSerial, e.Groups,
			e.Expires.Sub(now).Round(time.Hour)))
	}
	want := []string{
		"dev/c2 operator stg/d1 [staging] 48h0m0s",
		"ops/c1 operator bare/d3 [] 24h0m0s",
		"ops/c1 readonly prd/d2 [prod] 24h0m0s",
		"ops/c1 operator stg/d1 [staging] 24h0m0s",
	}
	if !slices.Equal(rows, want) {
		t.Errorf("access map:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	if got := AccessMap(certs, pol, api.AccessRequest{Group: "prod"}, now); len(got) != 1 || got[0].Daemon != "prd" {
		t.Errorf("--group prod: %+v", got)
	}
	if got := AccessMap(certs, pol, api.AccessRequest{Client: "dev"}, now); len(got) != 1 || got[0].Client != "dev" {
		t.Errorf("--client dev: %+v", got)
	}
	if got := AccessMap(nil, pol, api.AccessRequest{}, now); got == nil || len(got) != 0 {
		t.Errorf("empty map: %#v, want an empty non-nil slice", got)
	}
}

// BenchmarkAccessMap: 1,000 client certificates (half scoped) and 100
// daemons in three groups, with a group_roles policy.
//
//	go test ./admin -run '^$' -bench AccessMap
func BenchmarkAccessMap(b *testing.B) {
	now := time.Now()
	certs := accessFixture(1000, 100, now)
	pol, err := authz.LoadPolicy(strings.NewReader("group_roles:\n  prod: {operator: readonly, admin: operator}\n"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(AccessMap(certs, pol, api.AccessRequest{}, now))
	}
	b.ReportMetric(float64(n), "pairs")
}
