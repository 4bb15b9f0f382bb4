package store

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
)

// TestResolve runs the cases of testdata/resolve.json: serials, names and
// serial prefixes, in the order Resolve documents.
func TestResolve(t *testing.T) {
	var td struct {
		Certificates []struct {
			Serial, Name string
			Expired      bool
		}
		Cases []struct {
			Arg           string
			UnexpiredOnly bool `json:"unexpired_only"`
			Want          []string
			Err, Msg, Why string
		}
	}
	b, err := os.ReadFile("testdata/resolve.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &td); err != nil {
		t.Fatal(err)
	}
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Now()
	for i, c := range td.Certificates {
		n, _ := new(big.Int).SetString(c.Serial, 16)
		r := rec(n.Int64(), c.Name, pki.KindClient, now.Add(time.Hour))
		r.IssuedAt = now.Add(time.Duration(i) * time.Second)
		if c.Expired {
			r.NotAfter = now.Add(-time.Hour)
		}
		if err := s.PutCertificate(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range td.Cases {
		certs, err := s.Resolve(ctx, c.Arg, c.UnexpiredOnly, now)
		var got []string
		for _, cert := range certs {
			got = append(got, cert.Serial)
		}
		switch c.Err {
		case "":
			if err != nil || !slices.Equal(got, c.Want) {
				t.Errorf("%s: Resolve(%q) = %v, %v; want %v", c.Why, c.Arg, got, err, c.Want)
			}
		case "not found", "ambiguous":
			want := map[string]error{"not found": ErrNotFound, "ambiguous": ErrAmbiguous}[c.Err]
			if !errors.Is(err, want) || certs != nil {
				t.Errorf("%s: Resolve(%q) = %v, %v; want an error matching %v", c.Why, c.Arg, got, err, want)
			} else if c.Msg != "" && err.Error() != c.Msg {
				t.Errorf("%s: Resolve(%q) error %q, want %q", c.Why, c.Arg, err, c.Msg)
			}
		default:
			t.Fatalf("bad case %+v", c)
		}
	}
	// ResolveAll: one ambiguous argument resolves nothing.
	if certs, err := s.ResolveAll(ctx, []string{"alice", "abcd"}, true, now); !errors.Is(err, ErrAmbiguous) || certs != nil {
		t.Errorf("ResolveAll with an ambiguous prefix = %v, %v", certs, err)
	}
}
