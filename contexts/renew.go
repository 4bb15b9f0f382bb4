package contexts

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/docker/cli/cli/context/store"

	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// RenewOptions select the contexts to renew.
type RenewOptions struct {
	Options
	// Names are the contexts to renew; exclusive with All.
	Names []string
	// All renews every dockca context.
	All bool
	// Within, when positive, renews only certificates that expire within
	// this duration; zero means within the last third of their lifetime.
	// The others are reported as not due.
	Within time.Duration
	// Force renews whether due or not.
	Force bool
	// RevokeOld revokes each replaced certificate (reason superseded) once
	// its renewal is installed; the issuer must be a SupersededRevoker.
	RevokeOld bool
	// TTL is the new lifetime, remembered for later renewals; zero keeps
	// the lifetime the context was created with.
	TTL time.Duration
}

// Renew issues a new certificate for the same client and role and swaps it
// into each selected context atomically. Named contexts are all checked
// before anything is issued; with All, a failure on one context does not
// stop the others and all failures are returned together.
func Renew(ctx context.Context, o RenewOptions, iss Issuer, w io.Writer) error {
	if o.All == (len(o.Names) > 0) {
		return errors.New("renew contexts: name contexts or use --all, not both or neither")
	}
	if _, ok := iss.(SupersededRevoker); o.RevokeOld && !ok {
		return fmt.Errorf("renew contexts: %w: the old certificates cannot be revoked", ErrNoRevoker)
	}
	st := openStore(o.Options)
	var recs []record
	if o.All {
		all, err := st.List()
		if err != nil {
			return fmt.Errorf("renew contexts: %w", err)
		}
		for _, m := range all {
			if rec := fromMetadata(m); rec.Marker != nil {
				recs = append(recs, rec)
			}
		}
	} else {
		for _, name := range o.Names {
			rec, err := lookupOwned(st, name)
			if err != nil {
				return fmt.Errorf("renew context %q: %w", name, err)
			}
			recs = append(recs, rec)
		}
	}
	var errs []error
	for _, rec := range recs {
		if err := renew(ctx, o, st, rec, iss, w); err != nil {
			errs = append(errs, fmt.Errorf("renew context %q: %w", rec.Name, err))
		}
	}
	return errors.Join(errs...)
}

func renew(ctx context.Context, o RenewOptions, st *store.ContextStore, rec record, iss Issuer, w io.Writer) error {
	now := o.now()
	notAfter, oldSerial := rec.Marker.NotAfter, rec.Marker.Serial
	var notBefore time.Time
	current, readErr := readTLS(st, rec.Name)
	if readErr == nil {
		if leaf, err := tlsbundle.Leaf(current.Cert); err == nil {
			notBefore, notAfter, oldSerial = leaf.NotBefore, leaf.NotAfter, pki.FormatSerial(leaf.SerialNumber)
		}
	}
	if due, from := tlsbundle.Due(notBefore, notAfter, now, o.Within); !o.Force && !due {
		fmt.Fprintf(w, "context %s: not due, expires %s (due from %s; --force renews now)\n",
			rec.Name, notAfter.UTC().Format(time.RFC3339), from.UTC().Format(time.RFC3339))
		return nil
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = rec.Marker.ttl()
	} else {
		rec.Marker.TTL = ttl.String()
	}
	var m *Material
	var err error
	if caURLs := rec.Marker.serviceURLs(); len(caURLs) > 0 {
		caURL := strings.Join(caURLs, ", ")
		// Enrolled from a CA service: only that service can renew it, over
		// mutual TLS with the certificate the context holds now.
		rr, ok := iss.(RemoteRenewer)
		switch {
		case !ok:
			return fmt.Errorf("the context was enrolled from %s, which this renewal cannot reach", caURL)
		case readErr != nil:
			return fmt.Errorf("read the current certificate to renew with: %w", readErr)
		}
		if err := rec.Marker.checkRoot(current.CA); err != nil {
			return err
		}
		// A revoked certificate cannot be renewed; say so from the CRL
		// rather than from a refused handshake. An unreachable CRL is left
		// to the renewal itself to report.
		if ssc, ok := iss.(ServiceStatusChecker); ok {
			if revoked, err := ssc.RevokedAtService(ctx, caURLs, current.CA, oldSerial); err == nil && revoked {
				return fmt.Errorf("certificate %s was revoked by %s; it cannot be renewed: add the context again with a new token", oldSerial, caURL)
			}
		}
		if m, err = rr.RenewRemote(ctx, caURLs, *current); err != nil {
			return fmt.Errorf("renew at %s: %w", caURL, err)
		}
	} else if ri, ok := iss.(Reissuer); ok && readErr == nil {
		if m, err = ri.ReissueClient(ctx, oldSerial, rec.Marker.Client, rec.Marker.Role, ttl); err != nil {
			return fmt.Errorf("issue client certificate: %w", err)
		}
	} else if m, err = iss.IssueClient(ctx, rec.Marker.Client, rec.Marker.Role, ttl); err != nil {
		return fmt.Errorf("issue client certificate: %w", err)
	}
	if _, err := m.Check(now, x509.ExtKeyUsageClientAuth); err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if (m.Client != "" && m.Client != rec.Marker.Client) || (m.Role != "" && m.Role != rec.Marker.Role) {
		return fmt.Errorf("the CA issued %s for client %q role %q, not %q role %q; nothing installed",
			m.Serial, m.Client, m.Role, rec.Marker.Client, rec.Marker.Role)
	}
	if err := installTLS(st, rec.Name, m); err != nil {
		return fmt.Errorf("write TLS material (certificate %s was issued): %w", m.Serial, err)
	}
	// From here the context presents the new certificate; the metadata only
	// catches up, and List reads the file, so a crash now misleads nobody.
	rec.Marker.Serial, rec.Marker.NotAfter = m.Serial, m.NotAfter
	if rec.Marker.RootSHA256 != "" {
		// The service answered over TLS verified with the roots the
		// context held: after a CA rotation its new bundle may no longer
		// hold the old pinned root, and the pin follows the CA's current
		// one.
		if roots, err := tlsbundle.Certs(m.CA); err == nil && !tlsbundle.HasFingerprint(roots, rec.Marker.RootSHA256) {
			rec.Marker.RootSHA256 = pki.Fingerprint(roots[0])
		}
	}
	if err := writeMeta(st, rec); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	if _, err := os.Stat(o.envDir(rec.Name)); err == nil {
		if err := materialise(o.envDir(rec.Name), m.Bundle); err != nil {
			return fmt.Errorf("refresh env copy: %w", err)
		}
	}
	fmt.Fprintf(w, "context %s: renewed, certificate %s replaces %s, expires %s\n",
		rec.Name, m.Serial, oldSerial, m.NotAfter.UTC().Format(time.RFC3339))
	if o.RevokeOld {
		if readErr != nil {
			return fmt.Errorf("renewed, but the old certificate %s could not be read to revoke it: %w", oldSerial, readErr)
		}
		if err := iss.(SupersededRevoker).RevokeSuperseded(ctx, rec.Marker.serviceURLs(), *current); err != nil {
			return fmt.Errorf("renewed, but revoking the old certificate %s failed: %w", oldSerial, err)
		}
		fmt.Fprintf(w, "context %s: revoked the old certificate %s (superseded)\n", rec.Name, oldSerial)
	}
	return nil
}
