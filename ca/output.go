package ca

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// Files returns what to write into dir for an issued certificate: the root,
// the chain (leaf then intermediate) and the key, named for the kind, plus
// a daemon.json fragment for daemons. dir must be absolute so the fragment
// names absolute paths.
func (i *Issued) Files(dir string) ([]atomicfile.File, error) {
	keyPEM, err := i.KeyPEM()
	if err != nil {
		return nil, err
	}
	certName, keyName := pki.CertFiles(i.Record.Kind)
	files := []atomicfile.File{
		{Path: filepath.Join(dir, pki.FileCA), Data: i.RootsPEM(), Mode: 0o644},
		{Path: filepath.Join(dir, certName), Data: i.ChainPEM(), Mode: 0o644},
	}
	if keyPEM != nil {
		files = append(files, atomicfile.File{Path: filepath.Join(dir, keyName), Data: keyPEM, Mode: 0o600})
	}
	if i.Record.Kind == pki.KindDaemon {
		frag, err := json.MarshalIndent(pki.DaemonTLSConfig{
			TLSVerify: true,
			TLSCACert: filepath.Join(dir, pki.FileCA),
			TLSCert:   filepath.Join(dir, pki.FileServerCert),
			TLSKey:    filepath.Join(dir, pki.FileServerKey),
		}, "", "  ")
		if err != nil {
			return nil, err
		}
		files = append(files, atomicfile.File{Path: filepath.Join(dir, pki.FileDaemonJSON), Data: append(frag, '\n'), Mode: 0o644})
	}
	return files, nil
}

// ListEntry is the JSON form of a certificate in ls and show.
type ListEntry struct {
	Serial      string     `json:"serial"`
	Name        string     `json:"name"`
	Kind        pki.Kind   `json:"kind"`
	Role        pki.Role   `json:"role,omitempty"`
	SANs        []string   `json:"sans,omitempty"`
	Groups      []string   `json:"groups,omitempty"`     // a daemon's groups, or a client's scope
	AllGroups   bool       `json:"all_groups,omitempty"` // a client without a scope: it reaches every daemon
	NotBefore   time.Time  `json:"not_before"`
	NotAfter    time.Time  `json:"not_after"`
	Status      string     `json:"status"`
	IssuedAt    time.Time  `json:"issued_at"`
	IssuedBy    string     `json:"issued_by"`
	Holder      string     `json:"holder,omitempty"` // where it went, where dockca knows it
	Fingerprint string     `json:"sha256"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Reason      string     `json:"revocation_reason,omitempty"`
	// RenewedFrom and SupersededBy link a certificate to its predecessor
	// and to its renewal.
	RenewedFrom  string `json:"renewed_from,omitempty"`
	SupersededBy string `json:"superseded_by,omitempty"`
	PEM          string `json:"pem,omitempty"`
}

// Entry converts a record for output at now. Times are in UTC, as
// everything dockca prints.
func Entry(c *store.Certificate, now time.Time) ListEntry {
	e := ListEntry{
		Serial: c.Serial, Name: c.Name, Kind: c.Kind, Role: c.Role, SANs: c.SANs, Groups: c.Groups,
		AllGroups: c.Kind == pki.KindClient && len(c.Groups) == 0,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Status: string(c.Status(now)),
		IssuedAt: c.IssuedAt.UTC(), IssuedBy: c.IssuedBy, Holder: c.Holder, Fingerprint: c.Fingerprint,
		RenewedFrom: c.RenewedFrom, SupersededBy: c.SupersededBy,
	}
	if r := c.Revocation; r != nil {
		t := r.RevokedAt.UTC()
		e.RevokedAt, e.Reason = &t, r.Reason
	}
	return e
}

// Entries converts records for output at now, with their PEM if withPEM.
func Entries(certs []*store.Certificate, now time.Time, withPEM bool) []ListEntry {
	out := make([]ListEntry, 0, len(certs))
	for _, c := range certs {
		e := Entry(c, now)
		if withPEM {
			e.PEM = string(pki.PEMDER(c.DER))
		}
		out = append(out, e)
	}
	return out
}

// WriteList prints entries as a table or, with asJSON, as a JSON array (an
// empty array when there are none).
func WriteList(w io.Writer, entries []ListEntry, asJSON bool) error {
	if asJSON {
		if entries == nil {
			entries = []ListEntry{}
		}
		return writeJSON(w, entries)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tROLE\tGROUPS\tSERIAL\tNOT AFTER\tSTATUS")
	for _, e := range entries {
		role := e.Role
		if role == "" {
			role = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Kind, role, e.groupsColumn(), e.Serial,
			e.NotAfter.UTC().Format(time.RFC3339), e.Status)
	}
	return tw.Flush()
}

// groupsColumn is ls's GROUPS: a daemon's groups, a client's scope, "all"
// for a client without one (it reaches every daemon), "-" for none.
func (e ListEntry) groupsColumn() string {
	switch {
	case e.AllGroups:
		return "all"
	case len(e.Groups) == 0:
		return "-"
	}
	return strings.Join(e.Groups, ",")
}

// WriteShow prints one certificate in detail, or as JSON, or (withPEM and
// not asJSON) as PEM. The entry carries its PEM when withPEM.
func WriteShow(w io.Writer, e ListEntry, asJSON, withPEM bool) error {
	if asJSON {
		return writeJSON(w, e)
	}
	if withPEM {
		_, err := io.WriteString(w, e.PEM)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Name", e.Name)
	row("Kind", string(e.Kind))
	if e.Role != "" {
		row("Role", string(e.Role))
	}
	row("Serial", e.Serial)
	for _, s := range e.SANs {
		row("SAN", s)
	}
	switch {
	case e.Kind == pki.KindClient:
		row("Scope", pki.DescribeScope(e.Groups))
	case len(e.Groups) > 0:
		row("Groups", strings.Join(e.Groups, ","))
	}
	row("Not before", e.NotBefore.UTC().Format(time.RFC3339))
	row("Not after", e.NotAfter.UTC().Format(time.RFC3339))
	row("Status", e.Status)
	if e.RevokedAt != nil {
		row("Revoked at", e.RevokedAt.UTC().Format(time.RFC3339))
		row("Reason", e.Reason)
	}
	if e.SupersededBy != "" {
		row("Superseded by", e.SupersededBy)
	}
	if e.RenewedFrom != "" {
		row("Renewed from", e.RenewedFrom)
	}
	row("Issued at", e.IssuedAt.UTC().Format(time.RFC3339))
	row("Issued by", e.IssuedBy)
	if e.Holder != "" {
		row("Held by", e.Holder)
	}
	row("SHA-256", e.Fingerprint)
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Bundle is the hand-off to the packages that install TLS material
// (contexts, daemonsetup): root, chain and key as PEM.
func (i *Issued) Bundle() (*tlsbundle.Bundle, error) {
	key, err := i.KeyPEM()
	if err != nil {
		return nil, err
	}
	return &tlsbundle.Bundle{CA: i.RootsPEM(), Cert: i.ChainPEM(), Key: key, Serial: i.Record.Serial, NotAfter: i.Record.NotAfter}, nil
}

// FindEntries answers `dockca ls` (filter f) and `dockca show` (arg, a
// serial or a name) from st, for the CLI and the service's admin socket
// alike.
func FindEntries(ctx context.Context, st *store.Store, arg string, f store.Filter, withPEM bool) ([]ListEntry, error) {
	now := time.Now()
	f.Now = now
	var certs []*store.Certificate
	var err error
	if arg != "" {
		certs, err = st.Resolve(ctx, arg, false, now)
	} else {
		certs, err = st.List(ctx, f)
	}
	if err != nil {
		return nil, err
	}
	return Entries(certs, now, withPEM), nil
}
