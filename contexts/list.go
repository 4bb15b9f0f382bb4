package contexts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/cli/cli/context/store"

	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// Status is the state of a context's certificate.
type Status string

// Statuses reported by List.
const (
	StatusValid    Status = "valid"
	StatusExpiring Status = "expiring" // within ExpiringWindow
	StatusExpired  Status = "expired"
	StatusRevoked  Status = "revoked"
	StatusInvalid  Status = "invalid" // TLS files missing, mismatched or not from the CA
	// StatusUnknown: the context was enrolled from a CA service whose CRL
	// could not be consulted, so it cannot be called valid.
	StatusUnknown Status = "unknown"
)

// Info describes one dockca context. Serial and NotAfter come from the
// certificate file the docker CLI will present, not from the metadata, so
// they are right even if a renewal was interrupted after the swap.
type Info struct {
	Name        string    `json:"name"`
	Host        string    `json:"host"`
	Client      string    `json:"client"`
	Role        pki.Role  `json:"role,omitempty"`
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"not_after"`
	Status      Status    `json:"status"`
	Problem     string    `json:"problem,omitempty"`
	Current     bool      `json:"current"`
	Description string    `json:"description,omitempty"`
}

// List returns the contexts dockca wrote, sorted by name. sc may be nil
// when the CA cannot tell revocation; revoked is then never reported.
func List(ctx context.Context, o Options, sc StatusChecker) ([]Info, error) {
	st := openStore(o)
	all, err := st.List()
	if err != nil {
		return nil, fmt.Errorf("list contexts: %w", err)
	}
	// An unreadable config.json only costs the "current" marker here; the
	// commands that write it refuse instead.
	current, _ := currentContext(o.configDir())
	now := o.now()
	infos := []Info{}
	for _, m := range all {
		rec := fromMetadata(m)
		if rec.Marker == nil {
			continue
		}
		info := inspect(st, rec, now)
		info.Current = rec.Name == current
		switch {
		case info.Serial == "" || info.Status == StatusInvalid:
		case len(rec.Marker.serviceURLs()) > 0:
			revoked, err := serviceRevoked(ctx, st, rec, info.Serial, sc)
			switch {
			case revoked:
				info.Status = StatusRevoked
			case err != nil && info.Status != StatusExpired:
				info.Status, info.Problem = StatusUnknown, "revocation status unknown: "+err.Error()
			}
		case sc != nil:
			revoked, err := sc.Revoked(ctx, info.Serial)
			if err != nil {
				return nil, fmt.Errorf("list contexts: revocation status of %s: %w", rec.Name, err)
			}
			if revoked {
				info.Status = StatusRevoked
			}
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// serviceRevoked asks the CA service a context was enrolled from whether
// its certificate is revoked, trusting the root the context holds (and
// recorded at enrollment). An error means the status is unknown.
func serviceRevoked(ctx context.Context, st store.Reader, rec record, serial string, sc StatusChecker) (bool, error) {
	ssc, ok := sc.(ServiceStatusChecker)
	if !ok {
		return false, fmt.Errorf("the CRL of %s was not consulted", strings.Join(rec.Marker.serviceURLs(), ", "))
	}
	b, err := readTLS(st, rec.Name)
	if err != nil {
		return false, err
	}
	if err := rec.Marker.checkRoot(b.CA); err != nil {
		return false, err
	}
	return ssc.RevokedAtService(ctx, rec.Marker.serviceURLs(), b.CA, serial)
}

// inspect reads a context's TLS files and rates them at now.
func inspect(st store.Reader, rec record, now time.Time) Info {
	info := Info{
		Name: rec.Name, Host: rec.Host, Client: rec.Marker.Client, Role: rec.Marker.Role,
		Serial: rec.Marker.Serial, NotAfter: rec.Marker.NotAfter, Description: rec.Description,
	}
	b, err := readTLS(st, rec.Name)
	if err != nil {
		info.Status, info.Problem = StatusInvalid, err.Error()
		return info
	}
	leaf, err := tlsbundle.Leaf(b.Cert)
	if err != nil {
		info.Status, info.Problem = StatusInvalid, err.Error()
		return info
	}
	info.Serial, info.NotAfter = pki.FormatSerial(leaf.SerialNumber), leaf.NotAfter
	// Check the chain and key at a moment inside the validity window, so
	// that an expired certificate is reported as expired, not as invalid.
	at := now
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	if _, err := b.Check(at, x509.ExtKeyUsageClientAuth); err != nil {
		info.Status, info.Problem = StatusInvalid, err.Error()
		return info
	}
	switch {
	case !now.Before(leaf.NotAfter):
		info.Status = StatusExpired
	case leaf.NotAfter.Sub(now) <= ExpiringWindow:
		info.Status = StatusExpiring
	default:
		info.Status = StatusValid
	}
	return info
}

func readTLS(st store.Reader, name string) (*tlsbundle.Bundle, error) {
	var b tlsbundle.Bundle
	for file, dst := range map[string]*[]byte{pki.FileCA: &b.CA, pki.FileClientCert: &b.Cert, pki.FileClientKey: &b.Key} {
		data, err := st.GetTLSData(name, Endpoint, file)
		if err != nil {
			return nil, err
		}
		*dst = data
	}
	if _, err := tls.X509KeyPair(b.Cert, b.Key); err != nil {
		return nil, fmt.Errorf("%w: certificate and key do not match: %v", tlsbundle.ErrInvalid, err)
	}
	return &b, nil
}

// WriteTable prints infos as the `dockca context ls` table; the current
// context is starred, as `docker context ls` does.
func WriteTable(w io.Writer, infos []Info) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOST\tCLIENT\tROLE\tEXPIRES\tSTATUS")
	for _, i := range infos {
		name := i.Name
		if i.Current {
			name += " *"
		}
		expires := "-"
		if !i.NotAfter.IsZero() {
			expires = i.NotAfter.UTC().Format(time.RFC3339)
		}
		role := i.Role
		if role == "" {
			role = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, i.Host, i.Client, role, expires, i.Status)
	}
	return tw.Flush()
}

// WriteJSON prints infos as a JSON array (never null).
func WriteJSON(w io.Writer, infos []Info) error {
	if infos == nil {
		infos = []Info{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(infos)
}
