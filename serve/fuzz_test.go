package serve

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
)

// FuzzDecodeRequests feeds arbitrary bodies to the decoding of every
// request the service accepts. It must never panic, and every refusal must
// be a client error with a message (or the body-size error).
func FuzzDecodeRequests(f *testing.F) {
	key, err := pki.GenerateKey(pki.KeyECP256)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice"}}, key)
	if err != nil {
		f.Fatal(err)
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	good, _ := json.Marshal(api.SignRequest{CSR: csr, Token: "a.b.c"})
	for _, seed := range []string{
		string(good), `{}`, `{"csr": "", "token": ""}`, `{"csr": 1}`, `[]`, `null`, `{"csr": "x"} {}`,
		`{"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "token": "t"}`,
		`{"reason": "key-compromise", "serial": "0a"}`, `{"csr": "` + strings.Repeat("A", 1000) + `"}`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(err error) {
			if err == nil {
				return
			}
			var he *httpError
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return
			}
			if !errors.As(err, &he) || he.status != http.StatusBadRequest || he.msg == "" {
				t.Fatalf("refusal is not a 400 with a message: %T %v", err, err)
			}
		}
		req, c, err := DecodeSignRequest(bytes.NewReader(body))
		check(err)
		if err == nil && (c == nil || strings.TrimSpace(req.Token) == "") {
			t.Fatal("accepted a sign request without a valid CSR and a token")
		}
		var rr api.RenewRequest
		if err := decodeJSON(bytes.NewReader(body), &rr, true); err == nil {
			_, err := parseCSRField(rr.CSR, false)
			check(err)
		} else {
			check(err)
		}
		var rv api.RevokeRequest
		check(decodeJSON(bytes.NewReader(body), &rv, false))
		_, _ = pki.PeekToken(string(body))
	})
}
