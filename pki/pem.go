package pki

import (
	"crypto/x509"
	"encoding/pem"
)

// PEM block types dockca writes and reads.
const (
	PEMTypeCertificate = "CERTIFICATE"
	PEMTypeCRL         = "X509 CRL"
)

// PEMCert encodes one certificate.
func PEMCert(cert *x509.Certificate) []byte { return PEMDER(cert.Raw) }

// PEMChain encodes certificates in order.
func PEMChain(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, PEMCert(c)...)
	}
	return out
}

// PEMDER encodes one DER certificate.
func PEMDER(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMTypeCertificate, Bytes: der})
}

// PEMCRL encodes a DER CRL as PEM.
func PEMCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMTypeCRL, Bytes: der})
}

// PEMBlock returns the bytes of the first block in b of one of types, or
// nil when there is none.
func PEMBlock(b []byte, types ...string) []byte {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil
		}
		for _, t := range types {
			if blk.Type == t {
				return blk.Bytes
			}
		}
	}
}
