package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
)

// Serial numbers: dockca writes them as lowercase hex with an even number of
// digits, as `openssl x509 -serial` prints them but in lower case, and reads
// them in any case, with or without colons, "0x" and leading zeros.

// FormatSerial renders n.
func FormatSerial(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// SerialOf renders a certificate's serial ("" when it has none).
func SerialOf(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return FormatSerial(c.SerialNumber)
}

// ParseSerial reads a serial as openssl prints it.
func ParseSerial(s string) (*big.Int, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0x"), "0X")
	if t == "" || len(t) > 80 {
		return nil, fmt.Errorf("%q is not a serial number", s)
	}
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("%q is not a serial number", s)
	}
	return n, nil
}

// RandomSerial returns a positive random serial of 159 bits, well above
// the 128 bits of entropy dockca promises and within the 20 octets RFC 5280
// allows.
func RandomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 159)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("random serial: %w", err)
		}
		if n.BitLen() > 128 {
			return n, nil
		}
	}
}
