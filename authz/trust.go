package authz

import (
	"bytes"
	"crypto/x509"
)

// rootSet is the trust in force: the roots and their pool. It changes as a
// whole when the CA rotates (TrustSource).
type rootSet struct {
	certs []*x509.Certificate
	pool  *x509.CertPool
}

func newRootSet(certs []*x509.Certificate) *rootSet {
	rs := &rootSet{pool: x509.NewCertPool()}
	for _, c := range certs {
		if c == nil || rs.has(c) {
			continue
		}
		rs.certs = append(rs.certs, c)
		rs.pool.AddCert(c)
	}
	return rs
}

func (rs *rootSet) has(c *x509.Certificate) bool {
	for _, r := range rs.certs {
		if bytes.Equal(r.Raw, c.Raw) {
			return true
		}
	}
	return false
}

func (rs *rootSet) same(certs []*x509.Certificate) bool {
	if len(certs) != len(rs.certs) {
		return false
	}
	for _, c := range certs {
		if !rs.has(c) {
			return false
		}
	}
	return true
}

// syncRoots installs the TrustSource's roots when they changed, and drops
// the verified chains and issuers: a chain verified to a root that is no
// longer trusted must be verified again (and fail).
func (a *Authorizer) syncRoots() {
	if a.trust == nil {
		return
	}
	certs := a.trust.Roots()
	if len(certs) == 0 || a.roots.Load().same(certs) {
		return
	}
	a.roots.Store(newRootSet(certs))
	a.chains.reset()
	a.issuers.reset()
}

// currentRoots reports whether root is trusted now (only chains that end
// at a trusted root are cached).
func (a *Authorizer) currentRoots(root *x509.Certificate) bool { return a.roots.Load().has(root) }

// RootPool is the pool of the roots trusted now, for the gate's handshake.
func (a *Authorizer) RootPool() *x509.CertPool {
	a.syncRoots()
	return a.roots.Load().pool
}
