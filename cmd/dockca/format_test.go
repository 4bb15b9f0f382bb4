package main

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/contexts"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/golden"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// The --format templates of ls, show, token ls and context ls, on fixed
// rows, against golden files (testdata/format-*.golden).
func TestFormatRows(t *testing.T) {
	// A time in another zone: output is UTC all the same.
	zone := time.FixedZone("CET", 3600)
	at := time.Date(2026, 12, 1, 9, 30, 0, 0, zone)
	revokedAt := at.Add(time.Hour)
	// Through ca.Entries, as ls builds them: UTC in --json too.
	certs := ca.Entries([]*store.Certificate{
		{Serial: "0a1b2c3d", Name: "alice", Kind: pki.KindClient, Role: "readonly", NotBefore: at, NotAfter: at.AddDate(0, 0, 30),
			IssuedAt: at, IssuedBy: "root", Fingerprint: "ff00"},
		{Serial: "4e5f6071", Name: "docker1.example", Kind: pki.KindDaemon, SANs: []string{"docker1", "10.0.0.1"}, NotBefore: at,
			NotAfter: at.AddDate(0, 0, 90), IssuedAt: at, IssuedBy: "root", Fingerprint: "ee11",
			Revocation: &store.Revocation{RevokedAt: revokedAt, Reason: "key-compromise"}},
	}, at, false)
	tokens := tokenEntries([]api.TokenInfo{
		{ID: "t1", Kind: "client", Name: "bob", Role: "admin", CreatedAt: at, ExpiresAt: at.Add(time.Hour)},
		{ID: "t2", Kind: "daemon", Name: "h1", SANs: []string{"127.0.0.1"}, CreatedAt: at, ExpiresAt: at.Add(time.Hour),
			UsedAt: &revokedAt, Serial: "77"},
	}, at)
	ctxs := []contexts.Info{
		{Name: "prod", Host: "tcp://h1:2376", Client: "alice", Role: "admin", Serial: "0a1b2c3d", NotAfter: at, Status: contexts.StatusValid, Current: true},
	}
	table := func(w io.Writer) error { _, err := io.WriteString(w, "DEFAULT TABLE\n"); return err }
	cases := []struct {
		golden string
		rows   any
		format string
	}{
		{"format-ls-fields", certs, "{{.Serial}} {{.Name}} {{.Kind}} {{.NotAfter}} {{.RevokedAt}} {{join .SANs \",\"}}"},
		{"format-ls-json", certs, "{{json .}}"},
		{"format-ls-table", certs, `table {{.Name}}\t{{.Status}}\t{{.NotAfter}}`},
		{"format-ls-table-default", certs, "table"},
		{"format-ls-table-default", certs, ""},
		{"format-ls-methods", certs, `{{.NotAfter.Unix}} {{upper .Name}} {{truncate .Serial 4}}`},
		{"format-token-ls", tokens, `table {{.ID}}\t{{.Status}}\t{{.ExpiresAt}}\t{{.UsedAt}}`},
		{"format-token-json", tokens, "{{json .}}"},
		{"format-context-ls", ctxs, `{{.Name}}{{if .Current}} *{{end}} {{.Host}} {{.NotAfter}} {{.Status}}`},
		{"format-empty", []ca.ListEntry{}, `table {{.Name}}`},
	}
	for _, c := range cases {
		var b bytes.Buffer
		if err := formatRows(&b, c.rows, c.format, table); err != nil {
			t.Errorf("%s: %v", c.golden, err)
			continue
		}
		golden.Assert(t, c.golden+".golden", b.Bytes())
	}

	// Templates that do not parse or do not run are the user's error, and
	// print nothing.
	for _, f := range []string{"{{.Name", "{{.NoSuchField}}", "{{nosuchfunc .}}", "{{.Name.Foo}}"} {
		var b bytes.Buffer
		var fe *formatError
		if err := formatRows(&b, certs, f, table); !errors.As(err, &fe) || b.Len() > 0 {
			t.Errorf("format %q: %v, printed %q", f, err, b.String())
		}
	}
}
