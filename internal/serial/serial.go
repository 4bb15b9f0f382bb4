// Package serial is the one place that decides how dockca writes and reads
// certificate serial numbers: lowercase hex with an even number of digits,
// as `openssl x509 -serial` prints them but in lower case, and on input any
// case, with or without colons and leading zeros.
package serial

import (
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
)

// Format renders n.
func Format(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// Parse reads a serial as openssl prints it.
func Parse(s string) (*big.Int, error) {
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
