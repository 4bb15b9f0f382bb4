package tlsbundle_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/testca"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

func TestCheck(t *testing.T) {
	ca := testca.New(t)
	other := testca.New(t)
	issue := func(c *testca.CA, usage x509.ExtKeyUsage) tlsbundle.Bundle {
		b, err := c.Issue(testca.Request{CommonName: "x", Usage: usage, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return *b
	}
	good := issue(ca, x509.ExtKeyUsageClientAuth)
	if leaf, err := good.Check(time.Now(), x509.ExtKeyUsageClientAuth); err != nil || pki.FormatSerial(leaf.SerialNumber) != good.Serial {
		t.Fatalf("good bundle: %v", err)
	}
	mismatched := good
	mismatched.Key = issue(ca, x509.ExtKeyUsageClientAuth).Key
	foreign := good
	foreign.CA = other.RootPEM
	wrongSerial := good
	wrongSerial.Serial = "1"
	noIntermediate := good
	noIntermediate.Cert = good.Cert[:bytes.Index(good.Cert, []byte("-----END CERTIFICATE-----"))+len("-----END CERTIFICATE-----\n")]
	for name, tc := range map[string]struct {
		b     tlsbundle.Bundle
		at    time.Time
		usage x509.ExtKeyUsage
	}{
		"key of another cert": {mismatched, time.Now(), x509.ExtKeyUsageClientAuth},
		"other CA":            {foreign, time.Now(), x509.ExtKeyUsageClientAuth},
		"server use":          {good, time.Now(), x509.ExtKeyUsageServerAuth},
		"expired":             {good, time.Now().Add(2 * time.Hour), x509.ExtKeyUsageClientAuth},
		"serial lies":         {wrongSerial, time.Now(), x509.ExtKeyUsageClientAuth},
		"no intermediate":     {noIntermediate, time.Now(), x509.ExtKeyUsageClientAuth},
	} {
		if _, err := tc.b.Check(tc.at, tc.usage); !errors.Is(err, tlsbundle.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if !tlsbundle.SameCA(ca.RootPEM, append([]byte("\n"), ca.RootPEM...)) || tlsbundle.SameCA(ca.RootPEM, other.RootPEM) {
		t.Fatal("SameCA")
	}
	// A rotation's two-root bundle: the same in either order, not the
	// same as one of its roots alone.
	both := append(append([]byte{}, ca.RootPEM...), other.RootPEM...)
	if !tlsbundle.SameCA(both, append(append([]byte{}, other.RootPEM...), ca.RootPEM...)) || tlsbundle.SameCA(both, ca.RootPEM) {
		t.Fatal("SameCA with two roots")
	}
}
