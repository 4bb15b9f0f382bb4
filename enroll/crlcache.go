package enroll

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/internal/caurl"
	"github.com/dockca/dockca/pki"
)

// DefaultCRLTimeout bounds one CRL fetch of CRLCache, per URL of the
// service.
const DefaultCRLTimeout = 3 * time.Second

// CRLCache tells machines without the CA database whether the service
// revoked one of their certificates, from the service's CRL: fetched with
// a short timeout, its signature checked against the pinned root's
// intermediate, fetched once per service for the life of the cache (one
// command), and kept in Dir. When the service cannot be reached, a
// revocation in the kept CRL still counts (revocation is final), but "not
// revoked" is never concluded from it: the answer is an error, i.e.
// unknown, never valid.
type CRLCache struct {
	// Dir keeps the last CRL of each service (0600 files in a 0700
	// directory); empty keeps them in memory only.
	Dir     string
	Timeout time.Duration

	mu  sync.Mutex
	mem map[string]cachedCRL
}

type cachedCRL struct {
	crl *x509.RevocationList
	err error
}

// Revoked reports whether the service at caURLs (its replicas, with
// failover), trusted by root, lists serial in its CRL.
func (c *CRLCache) Revoked(ctx context.Context, caURLs []string, root *x509.Certificate, serial *big.Int) (bool, error) {
	crl, err := c.get(ctx, caURLs, root)
	if crl != nil {
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(serial) == 0 {
				return true, nil
			}
		}
	}
	if err != nil {
		return false, err
	}
	return false, nil
}

// get returns the service's current CRL or, when it cannot be had, the
// kept one (nil if none) and why.
func (c *CRLCache) get(ctx context.Context, caURLs []string, root *x509.Certificate) (*x509.RevocationList, error) {
	key := cacheKey(caurl.Format(caURLs), root)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mem == nil {
		c.mem = map[string]cachedCRL{}
	}
	if m, ok := c.mem[key]; ok {
		return m.crl, m.err
	}
	crl, issuer, err := c.fetch(ctx, caURLs, root)
	if err != nil {
		kept := c.load(key, root)
		c.mem[key] = cachedCRL{crl: kept, err: err}
		return kept, err
	}
	c.mem[key] = cachedCRL{crl: crl}
	if c.Dir != "" {
		// A copy that cannot be written only costs the offline answer.
		_ = c.store(key, crl, issuer)
	}
	return crl, nil
}

func (c *CRLCache) fetch(ctx context.Context, caURLs []string, root *x509.Certificate) (*x509.RevocationList, *x509.Certificate, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCRLTimeout
	}
	// Per URL: a dead replica must not use up the live one's time.
	ctx, cancel := context.WithTimeout(ctx, timeout*time.Duration(max(len(caURLs), 1)))
	defer cancel()
	cl, err := New(caURLs, root)
	if err != nil {
		return nil, nil, err
	}
	defer cl.hc.CloseIdleConnections()
	return cl.crlAndIssuer(ctx)
}

// cacheKey names a service's kept CRL by its URL list as --ca-url takes
// it, so the key of a single URL is what it was before lists.
func cacheKey(caURL string, root *x509.Certificate) string {
	sum := sha256.Sum256([]byte(caURL + "\x00" + pki.Fingerprint(root)))
	return hex.EncodeToString(sum[:16])
}

// store writes the CRL with the intermediate that signed it, so a later
// load can check the signature against the root without the network.
func (c *CRLCache) store(key string, crl *x509.RevocationList, issuer *x509.Certificate) error {
	if err := atomicfile.PrivateDir(c.Dir); err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.Write(pki.PEMCert(issuer))
	buf.Write(pki.PEMCRL(crl.Raw))
	return atomicfile.WriteFile(filepath.Join(c.Dir, key+".pem"), buf.Bytes(), 0o600)
}

// load returns the kept CRL for key, or nil when there is none or it does
// not verify.
func (c *CRLCache) load(key string, root *x509.Certificate) *x509.RevocationList {
	if c.Dir == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(c.Dir, key+".pem"))
	if err != nil {
		return nil
	}
	crl, err := parseCached(data, root)
	if err != nil {
		return nil
	}
	return crl
}

func parseCached(data []byte, root *x509.Certificate) (*x509.RevocationList, error) {
	var issuer *x509.Certificate
	var crl *x509.RevocationList
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		var err error
		switch blk.Type {
		case pki.PEMTypeCertificate:
			issuer, err = x509.ParseCertificate(blk.Bytes)
		case pki.PEMTypeCRL:
			crl, err = x509.ParseRevocationList(blk.Bytes)
		}
		if err != nil {
			return nil, err
		}
	}
	if issuer == nil || crl == nil {
		return nil, errors.New("incomplete cache file")
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := issuer.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("cached CRL issuer: %w", err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("cached CRL: %w", err)
	}
	return crl, nil
}
