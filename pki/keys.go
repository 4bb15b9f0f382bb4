package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"strings"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
)

// KeyType names the key algorithms dockca can create.
type KeyType string

const (
	KeyECP256  KeyType = "ec-p256"
	KeyECP384  KeyType = "ec-p384"
	KeyRSA3072 KeyType = "rsa-3072"
	KeyEd25519 KeyType = "ed25519"
)

// KeyTypes lists the accepted --key-type values.
var KeyTypes = []KeyType{KeyECP256, KeyECP384, KeyRSA3072, KeyEd25519}

// ParseKeyType validates a --key-type value.
func ParseKeyType(s string) (KeyType, error) {
	for _, k := range KeyTypes {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, len(KeyTypes))
	for i, k := range KeyTypes {
		names[i] = string(k)
	}
	return "", fmt.Errorf("unknown key type %q (use one of %s)", s, strings.Join(names, ", "))
}

// GenerateKey creates a new private key of type t.
func GenerateKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case KeyECP256:
		return keyutil.GenerateSigner("EC", "P-256", 0)
	case KeyECP384:
		return keyutil.GenerateSigner("EC", "P-384", 0)
	case KeyRSA3072:
		return keyutil.GenerateSigner("RSA", "", 3072)
	case KeyEd25519:
		return keyutil.GenerateSigner("OKP", "Ed25519", 0)
	}
	return nil, fmt.Errorf("unknown key type %q", t)
}

// MarshalPrivateKey writes an unencrypted PKCS#8 PEM key, the form dockerd
// and the docker CLI read.
func MarshalPrivateKey(key crypto.Signer) ([]byte, error) {
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// IsRSA reports whether pub is an RSA key (whose server certificates also
// carry keyEncipherment).
func IsRSA(pub crypto.PublicKey) bool {
	_, ok := pub.(*rsa.PublicKey)
	return ok
}

// CheckPublicKey accepts the keys dockca certifies: RSA of 2048 to 8192
// bits, ECDSA on P-256, P-384 or P-521, and Ed25519.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return fmt.Errorf("an RSA key of %d bits is not accepted (use 2048 to 8192 bits): %w", n, ErrPolicy)
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("an ECDSA key on %s is not accepted (use P-256, P-384 or P-521): %w", k.Curve.Params().Name, ErrPolicy)
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("a %T key is not accepted: %w", pub, ErrPolicy)
}
