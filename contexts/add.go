package contexts

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/docker/cli/cli/context/store"

	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/internal/caurl"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// DefaultCheckTimeout bounds the reachability check of AddOptions.
const DefaultCheckTimeout = 3 * time.Second

// AddOptions describe a new context.
type AddOptions struct {
	Options
	// Name is the context name; the docker CLI's naming rule applies.
	Name string
	// Host is the daemon, tcp://HOST:PORT.
	Host string
	// Client is the certificate's client name; empty means Name.
	Client string
	// Role is the role the certificate carries; empty means the CA's default.
	Role pki.Role
	// TTL is the certificate lifetime; zero means the CA's default.
	TTL time.Duration
	// Description is shown by `docker context ls`.
	Description string
	// Use makes the new context the docker CLI's current context.
	Use bool
	// Force overwrites an existing context, dockca's or not.
	Force bool
	// SkipHostCheck skips the TCP connect to Host before issuing; for
	// contexts prepared ahead of the daemon.
	SkipHostCheck bool
	// CheckTimeout bounds the connect; zero means DefaultCheckTimeout.
	CheckTimeout time.Duration
	// CAURLs (the CA service's replicas) are recorded in the marker, with
	// the fingerprint of the root the certificate came with, for later
	// renewal and revocation checks against a remote CA.
	CAURLs []string
}

// ParseHost validates a daemon address of the form tcp://HOST:PORT and
// returns it normalised. Only tcp is accepted: a context written by dockca
// exists to carry mutual TLS, which unix sockets and ssh do not use.
func ParseHost(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrInvalidHost, s, err)
	}
	if u.Scheme != "tcp" {
		return "", fmt.Errorf("%w %q: want tcp://HOST:PORT", ErrInvalidHost, s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") || u.Opaque != "" {
		return "", fmt.Errorf("%w %q: want tcp://HOST:PORT and nothing else", ErrInvalidHost, s)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || port == "" {
		return "", fmt.Errorf("%w %q: want tcp://HOST:PORT (the port is required)", ErrInvalidHost, s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%w %q: bad port %q", ErrInvalidHost, s, port)
	}
	return "tcp://" + net.JoinHostPort(host, port), nil
}

// checkReachable makes one TCP connection to host, so that a typo in the
// address is reported before the CA issues a certificate for it.
func checkReachable(ctx context.Context, host string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	addr := host[len("tcp://"):]
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %s: %v (skip this check with --no-check)", ErrUnreachable, host, err)
	}
	return conn.Close()
}

// Add issues a client certificate and writes context o.Name for it.
// Everything that can be checked locally — name, host, an existing context,
// a writable docker config, a readable config.json for Use, reachability —
// is checked before the CA is asked, so bad input issues nothing.
func Add(ctx context.Context, o AddOptions, iss Issuer, w io.Writer) error {
	if err := add(ctx, o, iss, w); err != nil {
		return fmt.Errorf("add context %q: %w", o.Name, err)
	}
	return nil
}

func add(ctx context.Context, o AddOptions, iss Issuer, w io.Writer) error {
	if err := ValidateName(o.Name); err != nil {
		return err
	}
	host, err := ParseHost(o.Host)
	if err != nil {
		return err
	}
	client := o.Client
	if client == "" {
		client = o.Name
	}
	st := openStore(o.Options)
	old, found, err := lookup(st, o.Name)
	if err != nil {
		return err
	}
	if found && !o.Force {
		if old.Marker == nil {
			return fmt.Errorf("%w (use --force to overwrite it)", ErrForeign)
		}
		return fmt.Errorf("%w (use renew for a new certificate, or --force to replace it)", ErrExists)
	}
	// The docker CLI makes its config dir 0700 (config.json may hold
	// credentials); create it the same way if it is missing.
	if err := atomicfile.CheckWritable(o.configDir(), 0o700); err != nil {
		return err
	}
	if err := atomicfile.CheckWritable(o.storeDir(), 0o755); err != nil {
		return err
	}
	if o.Use {
		if err := checkConfigFile(o.configDir()); err != nil {
			return err
		}
	}
	if !o.SkipHostCheck {
		if hv, ok := iss.(HostVerifier); ok {
			if err := hv.VerifyHost(ctx, host); err != nil {
				return fmt.Errorf("%w (skip this check with --no-check)", err)
			}
		} else if err := checkReachable(ctx, host, o.CheckTimeout); err != nil {
			return err
		}
	}

	m, err := iss.IssueClient(ctx, client, o.Role, o.TTL)
	if err != nil {
		return fmt.Errorf("issue client certificate: %w", err)
	}
	if _, err := m.Check(o.now(), x509.ExtKeyUsageClientAuth); err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	rec := record{
		Name: o.Name, Host: host, Description: o.Description,
		Marker: &Marker{Serial: m.Serial, NotAfter: m.NotAfter, Client: m.Client, Role: m.Role},
	}
	if o.TTL != 0 {
		rec.Marker.TTL = o.TTL.String()
	}
	rec.Marker.CAURL, rec.Marker.CAURLs = caurl.Record(o.CAURLs)
	if len(o.CAURLs) > 0 {
		root, err := tlsbundle.Leaf(m.CA)
		if err != nil {
			return fmt.Errorf("issued certificate's root: %w", err)
		}
		rec.Marker.RootSHA256 = pki.Fingerprint(root)
	}
	if rec.Marker.Client == "" {
		rec.Marker.Client = client
	}
	if rec.Marker.Role == "" {
		rec.Marker.Role = o.Role
	}
	// TLS first: until the metadata exists the docker CLI does not know the
	// context, so a crash in between leaves nothing usable half-made.
	if err := installTLS(st, o.Name, m); err != nil {
		return fmt.Errorf("write TLS material (certificate %s was issued): %w", m.Serial, err)
	}
	if err := writeMeta(st, rec); err != nil {
		if !found {
			_ = st.Remove(o.Name)
		}
		return fmt.Errorf("write metadata (certificate %s was issued): %w", m.Serial, err)
	}
	fmt.Fprintf(w, "context %s: %s as client %q", o.Name, host, rec.Marker.Client)
	if rec.Marker.Role != "" {
		fmt.Fprintf(w, " role %q", rec.Marker.Role)
	}
	fmt.Fprintf(w, ", certificate %s expires %s\n", m.Serial, m.NotAfter.UTC().Format(time.RFC3339))
	if o.Use {
		if err := setCurrentContext(o.configDir(), o.Name); err != nil {
			return fmt.Errorf("make it the current context: %w", err)
		}
		fmt.Fprintf(w, "current context is now %s\n", o.Name)
	}
	return nil
}

// installTLS replaces the docker endpoint's TLS material of a context in
// one atomic step (see replaceDir).
func installTLS(st *store.ContextStore, name string, m *Material) error {
	// <store>/tls/<sha256 of name>: stage beside it, tagged with the hash.
	ctxDir := st.GetStorageInfo(name).TLSPath
	return replaceDir(filepath.Join(ctxDir, Endpoint), filepath.Dir(ctxDir), filepath.Base(ctxDir), tlsFiles(m))
}
