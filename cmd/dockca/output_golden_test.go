package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/golden"
	"github.com/dockca/dockca/store"
)

// TestCheckAndFleetOutput pins what users read from check and from a
// token fleet.
func TestCheckAndFleetOutput(t *testing.T) {
	rep := &ca.CheckReport{Certificates: 12, Revocations: 2, Tokens: 5, Keys: "decrypted with the password and matched to the CA certificates",
		Problems: []store.Problem{{Where: "certificate 0a1b", Problem: "does not chain to this CA: x509: certificate signed by unknown authority"},
			{Where: "index certs_by_name", Problem: `entry "ghost\x00\x01" names no certificate record`}}}
	for _, c := range []struct {
		name   string
		rep    *ca.CheckReport
		asJSON bool
	}{
		{"check-problems.txt", rep, false},
		{"check-problems.json", rep, true},
		{"check-ok.txt", &ca.CheckReport{Certificates: 3, Keys: "decrypted with the password when dockca serve started"}, false},
		{"check-ok.json", &ca.CheckReport{Certificates: 3, Keys: "decrypted with the password when dockca serve started"}, true},
	} {
		var buf bytes.Buffer
		if err := writeCheckReport(&buf, c.rep, c.asJSON); err != nil {
			t.Fatal(err)
		}
		golden.Assert(t, c.name, buf.Bytes())
	}

	exp := time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)
	resps := []api.TokenResponse{
		{Token: "eyJ.a.1", Info: api.TokenInfo{Kind: "client", Name: "ci-1", ExpiresAt: exp}, CAURL: "https://ca.example:8443", RootFingerprint: "ab12"},
		{Token: "eyJ.b.2", Info: api.TokenInfo{Kind: "client", Name: "ci-2", ExpiresAt: exp}, CAURL: "https://ca.example:8443", RootFingerprint: "ab12"},
	}
	for _, asJSON := range []bool{false, true} {
		var out, errb bytes.Buffer
		if err := writeTokensCreated(resps, tokenCreateOptions{asJSON: asJSON, fleet: true}, &out, &errb); err != nil {
			t.Fatal(err)
		}
		name := "token-fleet.txt"
		if asJSON {
			name = "token-fleet.json"
		}
		golden.Assert(t, name, append(out.Bytes(), errb.Bytes()...))
	}
}
