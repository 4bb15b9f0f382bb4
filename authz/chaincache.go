package authz

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"time"
)

// chainCache remembers peer chains that verified, so that the two signature
// checks per request are paid once per client rather than on every API
// call (docker ps alone makes three). A hit is only as good as the cached
// chain's validity window, which is re-checked against the clock; revocation
// is never cached.
type chainCache struct {
	mu      sync.RWMutex
	entries map[[sha256.Size]byte]chainEntry
}

type chainEntry struct {
	leaf      *x509.Certificate
	notBefore time.Time // latest NotBefore in the chain
	notAfter  time.Time // earliest NotAfter in the chain
}

const maxChainCache = 4096

func chainKey(entries [][]byte) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	for _, e := range entries {
		// Length-prefix each entry so that different splits differ.
		l := len(e)
		n[0], n[1], n[2], n[3] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
		h.Write(n[:])
		h.Write(e)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (c *chainCache) get(k [sha256.Size]byte, now time.Time) *x509.Certificate {
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok || now.Before(e.notBefore) || now.After(e.notAfter) {
		return nil
	}
	return e.leaf
}

func (c *chainCache) put(k [sha256.Size]byte, chain []*x509.Certificate) {
	e := chainEntry{leaf: chain[0], notBefore: chain[0].NotBefore, notAfter: chain[0].NotAfter}
	for _, cert := range chain[1:] {
		if cert.NotBefore.After(e.notBefore) {
			e.notBefore = cert.NotBefore
		}
		if cert.NotAfter.Before(e.notAfter) {
			e.notAfter = cert.NotAfter
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxChainCache {
		// Crude but bounded: a flood of distinct valid chains can only make
		// the plugin verify more, never accept more.
		c.entries = make(map[[sha256.Size]byte]chainEntry)
	}
	c.entries[k] = e
}

// issuerCache holds intermediates that verified to the dockca root, each as
// a one-certificate pool to verify leaves against directly. Anchoring on a
// verified intermediate checks the same things as the full chain (the
// intermediate's validity and extended key usages are checked as the
// anchor's; dockca's root carries no constraints the intermediate lacks)
// with one signature instead of two, which is what a client's first request
// costs. Certificates are keyed by their exact DER bytes.
type issuerCache struct {
	mu    sync.RWMutex
	pools map[string]*x509.CertPool
}

const maxIssuers = 16

func (c *issuerCache) get(raw []byte) *x509.CertPool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.pools[string(raw)]
}

func (c *issuerCache) put(cert *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pools == nil || len(c.pools) >= maxIssuers {
		c.pools = make(map[string]*x509.CertPool)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	c.pools[string(cert.Raw)] = pool
}

func (c *chainCache) reset() {
	c.mu.Lock()
	c.entries = nil
	c.mu.Unlock()
}

func (c *issuerCache) reset() {
	c.mu.Lock()
	c.pools = nil
	c.mu.Unlock()
}
