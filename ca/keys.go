package ca

import (
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"

	"go.step.sm/crypto/pemutil"
)

// EncryptKey serialises key as PKCS#8 PEM, encrypted under password when it
// is not empty.
func EncryptKey(key crypto.Signer, password []byte) ([]byte, error) {
	opts := []pemutil.Options{pemutil.WithPKCS8(true)}
	if len(password) > 0 {
		opts = append(opts, pemutil.WithPassword(password))
	}
	block, err := pemutil.Serialize(key, opts...)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// DecryptKey parses a PEM key written by EncryptKey. A password that does
// not decrypt it gives ErrWrongPassword rather than a crypto error.
func DecryptKey(pemBytes, password []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("decode key: not PEM")
	}
	encrypted := block.Type == "ENCRYPTED PRIVATE KEY"
	if encrypted && len(password) == 0 {
		return nil, fmt.Errorf("the CA keys are encrypted and no password was given: %w", ErrWrongPassword)
	}
	var opts []pemutil.Options
	if encrypted {
		opts = append(opts, pemutil.WithPassword(password))
	}
	key, err := pemutil.ParseKey(pemBytes, opts...)
	if err != nil {
		if encrypted {
			return nil, ErrWrongPassword
		}
		return nil, fmt.Errorf("decode key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("decode key: %T is not a signing key", key)
	}
	return signer, nil
}
