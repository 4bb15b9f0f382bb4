package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/smallstep/certificates/cas"
	casapi "github.com/smallstep/certificates/cas/apiv1"
)

var oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}

// signingService is smallstep's soft CAS with one change: CRLs are signed
// without the issuing-distribution-point extension smallstep always adds.
//
// That extension names a distribution point, and RFC 5280 (6.3.3) scopes
// such a CRL to certificates whose CRL distribution point names the same
// one; OpenSSL enforces it ("different CRL scope"). dockca's leaves carry
// no distribution point (nothing Docker runs fetches one, and the only
// URLs that would satisfy zlint are plain-http ones the service does not
// serve), so a CRL without the extension is the one that covers every
// certificate of the issuer, which is what it is.
type signingService struct {
	casapi.CertificateAuthorityService
	crl casapi.CertificateAuthorityCRLGenerator
}

func newSigningService(issuer *x509.Certificate, signer crypto.Signer) (*signingService, error) {
	svc, err := cas.New(context.Background(), casapi.Options{
		Type: casapi.SoftCAS, Signer: signer, CertificateChain: []*x509.Certificate{issuer},
	})
	if err != nil {
		return nil, fmt.Errorf("start signing service: %w", err)
	}
	gen, ok := svc.(casapi.CertificateAuthorityCRLGenerator)
	if !ok {
		return nil, errors.New("start signing service: the soft CAS cannot sign CRLs")
	}
	return &signingService{CertificateAuthorityService: svc, crl: gen}, nil
}

// CreateCRL implements casapi.CertificateAuthorityCRLGenerator.
func (s *signingService) CreateCRL(req *casapi.CreateCRLRequest) (*casapi.CreateCRLResponse, error) {
	if req.RevocationList != nil {
		kept := req.RevocationList.ExtraExtensions[:0]
		for _, ext := range req.RevocationList.ExtraExtensions {
			if !ext.Id.Equal(oidIssuingDistributionPoint) {
				kept = append(kept, ext)
			}
		}
		req.RevocationList.ExtraExtensions = kept
	}
	return s.crl.CreateCRL(req)
}
