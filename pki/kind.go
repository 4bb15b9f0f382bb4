package pki

import (
	"crypto/x509"
	"fmt"
)

// Kind is what a certificate is for.
type Kind string

const (
	KindClient  Kind = "client"  // presented by docker CLIs (EKU clientAuth)
	KindDaemon  Kind = "daemon"  // presented by dockerd (EKU serverAuth)
	KindService Kind = "service" // dockca serve's own HTTPS certificate
)

// ParseKind validates a --kind value: the kinds one can ask for (the
// service's kind is the service's own).
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case KindClient, KindDaemon:
		return Kind(s), nil
	}
	return "", fmt.Errorf("unknown kind %q (use client or daemon): %w", s, ErrPolicy)
}

// Usage is the extended key usage a certificate of kind is issued for:
// serverAuth for daemons and the service, clientAuth for clients.
func (k Kind) Usage() x509.ExtKeyUsage {
	if k == KindClient {
		return x509.ExtKeyUsageClientAuth
	}
	return x509.ExtKeyUsageServerAuth
}
