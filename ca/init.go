package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// Defaults for init.
const (
	DefaultName            = "dockca"
	DefaultRootTTL         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateTTL = 5 * 365 * 24 * time.Hour
	clockSkew              = time.Minute
)

// InitOptions configure a new authority.
type InitOptions struct {
	Name            string
	KeyType         pki.KeyType
	RootTTL         time.Duration
	IntermediateTTL time.Duration
	// Password encrypts both CA keys; empty means they are stored
	// unencrypted (init --no-password, for development only).
	Password []byte
}

// Init creates a root and an intermediate and stores them with their keys
// in one transaction. It refuses a store that already holds an authority.
func Init(ctx context.Context, st *store.Store, o InitOptions) (*store.CA, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.KeyType == "" {
		o.KeyType = pki.KeyECP256
	}
	if o.RootTTL == 0 {
		o.RootTTL = DefaultRootTTL
	}
	if o.IntermediateTTL == 0 {
		o.IntermediateTTL = DefaultIntermediateTTL
	}
	switch {
	case o.RootTTL < 24*time.Hour:
		return nil, fmt.Errorf("init: root TTL %s is shorter than a day: %w", o.RootTTL, pki.ErrPolicy)
	case o.IntermediateTTL < 24*time.Hour:
		return nil, fmt.Errorf("init: intermediate TTL %s is shorter than a day: %w", o.IntermediateTTL, pki.ErrPolicy)
	case o.IntermediateTTL > o.RootTTL:
		return nil, fmt.Errorf("init: intermediate TTL %s outlives the root TTL %s: %w", o.IntermediateTTL, o.RootTTL, pki.ErrPolicy)
	}
	if err := pki.CheckCommonName(o.Name); err != nil {
		return nil, fmt.Errorf("init: name: %w", err)
	}
	if _, err := st.CA(ctx); err == nil {
		return nil, fmt.Errorf("init: %w", store.ErrCAExists)
	} else if !errors.Is(err, store.ErrNoCA) {
		return nil, fmt.Errorf("init: %w", err)
	}

	rootKey, err := pki.GenerateKey(o.KeyType)
	if err != nil {
		return nil, fmt.Errorf("init: root key: %w", err)
	}
	interKey, err := pki.GenerateKey(o.KeyType)
	if err != nil {
		return nil, fmt.Errorf("init: intermediate key: %w", err)
	}
	now := time.Now().UTC()
	root, err := createCACert(caCertSpec{
		cn: o.Name + " Root CA", org: o.Name, notBefore: now.Add(-clockSkew), notAfter: now.Add(o.RootTTL),
		pub: rootKey.Public(), signer: rootKey, maxPathLen: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("init: root certificate: %w", err)
	}
	inter, err := createCACert(caCertSpec{
		cn: o.Name + " Intermediate CA", org: o.Name, notBefore: now.Add(-clockSkew), notAfter: now.Add(o.IntermediateTTL),
		pub: interKey.Public(), signer: rootKey, parent: root, maxPathLen: 0,
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("init: intermediate certificate: %w", err)
	}
	rootPEM, err := EncryptKey(rootKey, o.Password)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	interPEM, err := EncryptKey(interKey, o.Password)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	rec := &store.CA{
		Name: o.Name, KeyType: string(o.KeyType), RootDER: root.Raw, IntermediateDER: inter.Raw,
		RootKeyPEM: rootPEM, IntermediateKey: interPEM, Encrypted: len(o.Password) > 0,
		CreatedAt: now, RootFingerprint: pki.Fingerprint(root),
	}
	if err := st.InitCA(ctx, rec); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	return rec, nil
}

type caCertSpec struct {
	cn, org             string
	notBefore, notAfter time.Time
	pub                 crypto.PublicKey
	signer              crypto.Signer
	parent              *x509.Certificate // nil: self-signed
	maxPathLen          int
	eku                 []x509.ExtKeyUsage
}

func createCACert(s caCertSpec) (*x509.Certificate, error) {
	serial, err := pki.RandomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: s.cn, Organization: []string{s.org}},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           s.eku,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            s.maxPathLen,
		MaxPathLenZero:        s.maxPathLen == 0,
	}
	skid, err := subjectKeyID(s.pub)
	if err != nil {
		return nil, err
	}
	tmpl.SubjectKeyId = skid
	parent := s.parent
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, s.pub, s.signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
