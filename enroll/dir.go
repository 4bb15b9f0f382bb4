package enroll

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/internal/caurl"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// FileMeta records, beside the certificate, which service issued it, so
// renewals need no flags.
const FileMeta = "dockca-enroll.json"

// Meta is the content of FileMeta.
type Meta struct {
	// CAURL is the service's first URL: all that records written before
	// several URLs existed hold, and what such a dockca reads.
	CAURL string `json:"ca_url"`
	// CAURLs are all the service's URLs (its replicas), in order, when
	// there are several.
	CAURLs     []string `json:"ca_urls,omitempty"`
	RootSHA256 string   `json:"root_sha256"`
	Kind       string   `json:"kind"`
	Name       string   `json:"name"`
}

// URLs are the service URLs the record names (none: it names none).
func (m Meta) URLs() []string { return caurl.FromRecord(m.CAURL, m.CAURLs) }

// Dir is a certificate directory in the layout of pki.CertFiles: ca.pem
// plus cert.pem/key.pem for a client (what DOCKER_CERT_PATH expects) or
// server-cert.pem/server-key.pem for a daemon.
type Dir struct {
	Path     string
	Meta     Meta
	CertFile string
	KeyFile  string
	Cert     tls.Certificate
	Leaf     *x509.Certificate
	Root     *x509.Certificate
	// Roots is every root of ca.pem, Root first.
	Roots []*x509.Certificate
}

// Files returns the certificate and key paths of dir for kind.
func Files(dir string, kind pki.Kind) (cert, key string) {
	cert, key = pki.CertFiles(kind)
	return filepath.Join(dir, cert), filepath.Join(dir, key)
}

// WriteDir writes an enrollment or renewal into dir (created 0700): the
// root, the chain, the key when it changed (0600) and the metadata, each
// atomically.
func WriteDir(dir string, c *Client, res *Result) error {
	if err := atomicfile.PrivateDir(dir); err != nil {
		return err
	}
	certPath, keyPath := Files(dir, pki.Kind(res.Resp.Kind))
	meta, err := c.metaFile(res.Resp.Kind, res.Resp.Name, c.pinFor(res))
	if err != nil {
		return err
	}
	files := []atomicfile.File{
		{Path: filepath.Join(dir, pki.FileCA), Data: c.bundleFor(res), Mode: 0o644},
	}
	// The key goes first: a reader between the renames sees a new key with
	// an old certificate only for a moment, and the hook runs after both.
	if res.KeyPEM != nil {
		files = append(files, atomicfile.File{Path: keyPath, Data: res.KeyPEM, Mode: 0o600})
	}
	files = append(files,
		atomicfile.File{Path: certPath, Data: []byte(res.Resp.Chain), Mode: 0o644},
		atomicfile.File{Path: filepath.Join(dir, FileMeta), Data: meta, Mode: 0o644},
	)
	return atomicfile.WriteAll(files, true)
}

// MetaFile is the content of FileMeta for a certificate of kind and name
// enrolled from c: the service URL and the pinned root, which is all a
// later `dockca renew --cert-dir` needs. Every enrollment (enroll, remote
// daemon setup) writes it beside the certificate.
func (c *Client) MetaFile(kind, name string) ([]byte, error) {
	return c.metaFile(kind, name, pki.Fingerprint(c.Root()))
}

func (c *Client) metaFile(kind, name, pin string) ([]byte, error) {
	m := Meta{RootSHA256: pin, Kind: kind, Name: name}
	m.CAURL, m.CAURLs = caurl.Record(c.URLs())
	meta, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(meta, '\n'), nil
}

// bundleFor is the ca.pem to write with res: the service's trust bundle as
// it answered over TLS verified with the roots this client trusts (during
// a CA rotation it carries the new root and the old one, and after it the
// new one only), else the client's own roots.
func (c *Client) bundleFor(res *Result) []byte {
	if roots, err := tlsbundle.Certs([]byte(res.Resp.CA)); err == nil {
		return pki.PEMChain(roots...)
	}
	return c.RootsPEM()
}

// pinFor is the root fingerprint recorded with res: the pinned root while
// the bundle still holds it, else the CA's current root.
func (c *Client) pinFor(res *Result) string {
	pin := pki.Fingerprint(c.Root())
	if roots, err := tlsbundle.Certs([]byte(res.Resp.CA)); err == nil && !tlsbundle.HasFingerprint(roots, pin) {
		return pki.Fingerprint(roots[0])
	}
	return pin
}

// LoadDir reads a certificate directory.
func LoadDir(dir string) (*Dir, error) {
	d := &Dir{Path: dir}
	if b, err := os.ReadFile(filepath.Join(dir, FileMeta)); err == nil {
		if err := json.Unmarshal(b, &d.Meta); err != nil {
			return nil, fmt.Errorf("%s: %w", FileMeta, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	kind := pki.Kind(d.Meta.Kind)
	if kind == "" {
		kind = pki.KindClient
		if _, err := os.Stat(filepath.Join(dir, pki.FileServerCert)); err == nil {
			kind = pki.KindDaemon
		}
	}
	d.CertFile, d.KeyFile = Files(dir, kind)
	cert, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate from %s: %w", dir, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	d.Cert, d.Leaf = cert, cert.Leaf
	rootPEM, err := os.ReadFile(filepath.Join(dir, pki.FileCA))
	if err != nil {
		return nil, fmt.Errorf("load CA root: %w", err)
	}
	blk, _ := pem.Decode(rootPEM)
	if blk == nil {
		return nil, fmt.Errorf("%s: not PEM", pki.FileCA)
	}
	if d.Roots, err = tlsbundle.Certs(rootPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", pki.FileCA, err)
	}
	d.Root = d.Roots[0]
	if pin := d.Meta.RootSHA256; pin != "" {
		// During a CA rotation's overlap ca.pem holds two roots; the
		// pinned one must be among them, and is the one Root reports.
		i := slices.IndexFunc(d.Roots, func(r *x509.Certificate) bool { return pki.Fingerprint(r) == pin })
		if i < 0 {
			return nil, fmt.Errorf("%s in %s is not the root the directory was enrolled with: %w", pki.FileCA, dir, ErrFingerprintMismatch)
		}
		d.Roots[0], d.Roots[i] = d.Roots[i], d.Roots[0]
		d.Root = d.Roots[0]
	}
	return d, nil
}

// Client returns a client for the directory's service (caURLs, when
// given, override the recorded ones), trusting the directory's root.
func (d *Dir) Client(caURLs []string) (*Client, error) {
	if len(caURLs) == 0 {
		caURLs = d.Meta.URLs()
	}
	if len(caURLs) == 0 {
		return nil, fmt.Errorf("%s records no CA URL: pass --ca-url", d.Path)
	}
	c, err := NewWithRoots(caURLs, d.Roots)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(d.Path, FileMeta), err)
	}
	return c, nil
}
