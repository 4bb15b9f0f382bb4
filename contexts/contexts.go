// Package contexts writes, lists, renews and removes Docker CLI contexts
// that reach a dockca-protected daemon over mutual TLS. It uses the docker
// CLI's own context store, so the files are exactly the ones `docker
// context` and `docker --context` read; dockca's bookkeeping (serial,
// expiry, client name, role) rides in the context metadata under the
// "dockca" key, which is also how dockca recognises its own contexts and
// refuses to touch anybody else's. Certificates come from the caller through
// the Issuer interface, so this package needs no CA of its own. TLS material
// is only ever replaced as a whole directory by an atomic rename, so a
// context never holds a certificate and key that do not belong together.
package contexts

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli/config"
	dcontext "github.com/docker/cli/cli/context"
	"github.com/docker/cli/cli/context/store"

	"github.com/dockca/dockca/internal/caurl"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// Endpoint is the context-store endpoint name the docker CLI reads.
const Endpoint = "docker"

// ExpiringWindow is how close to expiry a certificate is reported as
// "expiring" by List.
const ExpiringWindow = 7 * 24 * time.Hour

// Sentinel errors for callers (the CLI) that branch on the failure.
var (
	ErrInvalidName = errors.New("invalid context name")
	ErrInvalidHost = errors.New("invalid host")
	ErrUnreachable = errors.New("host unreachable")
	ErrExists      = errors.New("context already exists")
	ErrForeign     = errors.New("context was not written by dockca")
	ErrNotFound    = errors.New("context not found")
	ErrNoRevoker   = errors.New("revocation is not available")
)

// Material is a client certificate issued for a context.
type Material struct {
	tlsbundle.Bundle
	// Client and Role are the identity the certificate carries, as the CA
	// recorded them.
	Client string
	Role   pki.Role
}

// Issuer issues client certificates. A ttl of zero means the CA's default.
type Issuer interface {
	IssueClient(ctx context.Context, client string, role pki.Role, ttl time.Duration) (*Material, error)
}

// RemoteRenewer renews the certificate of a context that was enrolled from
// a dockca CA service (its marker holds the service URL): the service
// renews over mutual TLS with the certificate the context holds now, so no
// CA database is needed on this machine.
type RemoteRenewer interface {
	RenewRemote(ctx context.Context, caURLs []string, current tlsbundle.Bundle) (*Material, error)
}

// HostVerifier is implemented by issuers that can check, before a
// certificate is issued, that host is a daemon of their CA: it answers TLS
// with a certificate that chains to the CA's root and covers the host
// name. Add uses it instead of the plain TCP check, so a one-time token is
// never spent on a context that cannot work.
type HostVerifier interface {
	VerifyHost(ctx context.Context, host string) error
}

// ServiceStatusChecker tells whether the CA service at caURLs (its
// replicas), whose root is
// rootPEM, has revoked a serial (from its CRL). An error means the status
// is not known (unreachable service, bad CRL).
type ServiceStatusChecker interface {
	RevokedAtService(ctx context.Context, caURLs []string, rootPEM []byte, serial string) (bool, error)
}

// Reissuer is an Issuer that records the certificate a renewal replaces,
// so the CA shows the old one as superseded.
type Reissuer interface {
	ReissueClient(ctx context.Context, from, client string, role pki.Role, ttl time.Duration) (*Material, error)
}

// SupersededRevoker revokes a renewed context's previous certificate with
// reason superseded (RenewOptions.RevokeOld): at the service at caURLs with
// the certificate itself, or at the local CA when caURLs is empty.
type SupersededRevoker interface {
	RevokeSuperseded(ctx context.Context, caURLs []string, old tlsbundle.Bundle) error
}

// Revoker revokes a certificate by serial (lowercase hex).
type Revoker interface {
	Revoke(ctx context.Context, serial string) error
}

// StatusChecker tells whether the CA has revoked a serial.
type StatusChecker interface {
	Revoked(ctx context.Context, serial string) (bool, error)
}

// Options select the docker CLI configuration to work on.
type Options struct {
	// DockerConfigDir is the docker CLI configuration directory
	// (--docker-config). Empty means what the docker CLI itself uses:
	// $DOCKER_CONFIG, else ~/.docker.
	DockerConfigDir string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o Options) configDir() string {
	if o.DockerConfigDir != "" {
		return o.DockerConfigDir
	}
	return config.Dir()
}

// CacheDir is where dockca keeps what it fetched for these contexts (the
// CRLs of CA services), beside the docker CLI configuration.
func (o Options) CacheDir() string { return filepath.Join(o.configDir(), "dockca", "cache") }

func (o Options) storeDir() string { return filepath.Join(o.configDir(), "contexts") }

// envDir is where Env materialises TLS files; Remove and Renew keep it in
// step so that no stale key copy outlives its context.
func (o Options) envDir(name string) string {
	return filepath.Join(o.configDir(), "dockca", "env", name)
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Marker is dockca's record inside a context's metadata. Its presence is
// what makes a context dockca's.
type Marker struct {
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	Client   string    `json:"client"`
	Role     pki.Role  `json:"role,omitempty"`
	// CAURL is the CA service's first URL (what records from before URL
	// lists hold); CAURLs all of them, when there are several (see
	// caurl.Record). Empty: the local CA issued the certificate.
	CAURL  string   `json:"ca_url,omitempty"`
	CAURLs []string `json:"ca_urls,omitempty"`
	// RootSHA256 is the fingerprint of the root the service was trusted
	// by at enrollment; renewals and revocation checks insist on it.
	RootSHA256 string `json:"root_sha256,omitempty"`
	// TTL is the lifetime asked for at add (Go duration text, empty for the
	// CA's default); renew asks for the same.
	TTL string `json:"ttl,omitempty"`
}

// serviceURLs are the URLs of the CA service the context was enrolled
// from (nil: the local CA issued it).
func (m *Marker) serviceURLs() []string { return caurl.FromRecord(m.CAURL, m.CAURLs) }

// checkRoot insists that rootPEM holds the root the context was enrolled
// with (or moved to in a renewal during a CA rotation), when the marker
// recorded one.
func (m *Marker) checkRoot(rootPEM []byte) error {
	if m.RootSHA256 == "" {
		return nil
	}
	roots, err := tlsbundle.Certs(rootPEM)
	if err != nil {
		return fmt.Errorf("the context's ca.pem: %w", err)
	}
	// During a CA rotation's overlap ca.pem holds two roots; the pinned
	// one must be among them.
	if !tlsbundle.HasFingerprint(roots, m.RootSHA256) {
		return fmt.Errorf("the context's ca.pem (SHA-256 %s) is not the root it was enrolled with (%s)", pki.Fingerprint(roots[0]), m.RootSHA256)
	}
	return nil
}

func (m *Marker) ttl() time.Duration {
	d, err := time.ParseDuration(m.TTL)
	if err != nil {
		return 0
	}
	return d
}

// contextMeta is the context-level metadata. The docker CLI reads
// Description and keeps other keys (ours) as additional fields, so `docker
// context ls` shows the description and `docker context inspect` shows the
// marker.
type contextMeta struct {
	Description string  `json:",omitempty"`
	Dockca      *Marker `json:"dockca,omitempty"`
}

func openStore(o Options) *store.ContextStore {
	return store.New(o.storeDir(), store.NewConfig(
		func() any { return &contextMeta{} },
		store.EndpointTypeGetter(Endpoint, func() any { return &dcontext.EndpointMetaBase{} }),
	))
}

// record is one context as dockca sees it.
type record struct {
	Name        string
	Host        string
	Description string
	Marker      *Marker // nil for a foreign context
}

func fromMetadata(m store.Metadata) record {
	r := record{Name: m.Name}
	if cm, ok := m.Metadata.(contextMeta); ok {
		r.Description = cm.Description
		r.Marker = cm.Dockca
	}
	if ep, ok := m.Endpoints[Endpoint].(dcontext.EndpointMetaBase); ok {
		r.Host = ep.Host
	}
	return r
}

// lookup reads one context; found is false when it does not exist.
func lookup(st *store.ContextStore, name string) (rec record, found bool, err error) {
	m, err := st.GetMetadata(name)
	if errdefs.IsNotFound(err) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	return fromMetadata(m), true, nil
}

// lookupOwned reads a context that must exist and be dockca's.
func lookupOwned(st *store.ContextStore, name string) (record, error) {
	rec, found, err := lookup(st, name)
	switch {
	case err != nil:
		return record{}, err
	case !found:
		return record{}, ErrNotFound // the callers' prefix names it
	case rec.Marker == nil:
		return record{}, ErrForeign
	}
	return rec, nil
}

func writeMeta(st *store.ContextStore, rec record) error {
	return st.CreateOrUpdate(store.Metadata{
		Name:     rec.Name,
		Metadata: contextMeta{Description: rec.Description, Dockca: rec.Marker},
		Endpoints: map[string]any{
			Endpoint: dcontext.EndpointMetaBase{Host: rec.Host},
		},
	})
}

// ValidateName applies the docker CLI's own rule for context names.
func ValidateName(name string) error {
	if err := store.ValidateContextName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidName, err)
	}
	return nil
}
