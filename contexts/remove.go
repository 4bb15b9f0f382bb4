package contexts

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/docker/cli/cli/context/store"

	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// RemoveOptions name the contexts to remove.
type RemoveOptions struct {
	Options
	Names []string
	// Revoke also revokes each context's certificate(s) at the CA.
	Revoke bool
}

// Remove deletes dockca contexts (metadata, TLS material and any Env copy).
// All names are checked before anything is removed, and a context whose
// revocation fails is kept, so that its serial is not lost while its
// certificate is still trusted.
func Remove(ctx context.Context, o RemoveOptions, rv Revoker, w io.Writer) error {
	if len(o.Names) == 0 {
		return fmt.Errorf("remove context: no context named")
	}
	if o.Revoke && rv == nil {
		return fmt.Errorf("remove context: %w", ErrNoRevoker)
	}
	st := openStore(o.Options)
	recs := make([]record, 0, len(o.Names))
	for _, name := range o.Names {
		rec, err := lookupOwned(st, name)
		if err != nil {
			return fmt.Errorf("remove context %q: %w", name, err)
		}
		recs = append(recs, rec)
	}
	current, err := currentContext(o.configDir())
	if err != nil {
		return fmt.Errorf("remove context: %w", err)
	}
	for _, rec := range recs {
		if err := remove(ctx, o, st, rec, current, rv, w); err != nil {
			return fmt.Errorf("remove context %q: %w", rec.Name, err)
		}
	}
	return nil
}

func remove(ctx context.Context, o RemoveOptions, st *store.ContextStore, rec record, current string, rv Revoker, w io.Writer) error {
	if o.Revoke {
		// Revoke what the context presents and what its metadata names: after
		// an interrupted renewal they differ and both are live certificates.
		serials := []string{rec.Marker.Serial}
		if s := fileSerial(st, rec.Name); s != "" && s != rec.Marker.Serial {
			serials = append(serials, s)
		}
		for _, s := range serials {
			if s == "" {
				continue
			}
			if err := rv.Revoke(ctx, s); err != nil {
				return fmt.Errorf("revoke %s (context kept): %w", s, err)
			}
			fmt.Fprintf(w, "revoked certificate %s\n", s)
		}
	}
	if err := st.Remove(rec.Name); err != nil {
		return err
	}
	if err := os.RemoveAll(o.envDir(rec.Name)); err != nil {
		return err
	}
	fmt.Fprintf(w, "removed context %s\n", rec.Name)
	if rec.Name == current {
		// Left pointing at a missing context, every docker command fails.
		if err := setCurrentContext(o.configDir(), ""); err != nil {
			return fmt.Errorf("reset current context: %w", err)
		}
		fmt.Fprintln(w, "current context is now default")
	}
	return nil
}

// fileSerial is the serial of the certificate file a context holds, or ""
// when it cannot be read.
func fileSerial(st store.Reader, name string) string {
	data, err := st.GetTLSData(name, Endpoint, pki.FileClientCert)
	if err != nil {
		return ""
	}
	leaf, err := tlsbundle.Leaf(data)
	if err != nil {
		return ""
	}
	return pki.FormatSerial(leaf.SerialNumber)
}
