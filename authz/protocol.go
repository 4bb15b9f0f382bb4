package authz

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/dockca/dockca/pki"
)

// The legacy plugin protocol: dockerd POSTs JSON to these paths on the
// plugin's unix socket and expects JSON back with this media type.
const (
	pathActivate = "/Plugin.Activate"
	pathAuthZReq = "/AuthZPlugin.AuthZReq"
	pathAuthZRes = "/AuthZPlugin.AuthZRes"
	pluginMedia  = "application/vnd.docker.plugins.v1.2+json"
)

// maxPluginRequest bounds what the decoder reads. dockerd forwards bodies
// under 1 MiB, which base64 inflates by a third; headers and certificates are
// small. Anything larger is not from dockerd.
const maxPluginRequest = 4 << 20

// ErrMalformed marks a plugin request that could not be decoded. Such a
// request is denied, never passed on.
var ErrMalformed = errors.New("malformed plugin request")

// Request is what dockerd sends to /AuthZPlugin.AuthZReq and
// /AuthZPlugin.AuthZRes (moby pkg/authorization.Request). Byte slices arrive
// as base64 in JSON: RequestBody is the raw API body, and each
// RequestPeerCertificates entry is the PEM text of one certificate the client
// presented, the leaf first.
type Request struct {
	User                    string   `json:"User,omitempty"`
	UserAuthNMethod         string   `json:"UserAuthNMethod,omitempty"`
	RequestMethod           string   `json:"RequestMethod,omitempty"`
	RequestURI              string   `json:"RequestUri,omitempty"`
	RequestBody             []byte   `json:"RequestBody,omitempty"`
	RequestPeerCertificates [][]byte `json:"RequestPeerCertificates,omitempty"`
	// RequestHeaders holds the last value of each header: requestGuards
	// reads Content-Type and Content-Length, and the plugin recognises its
	// own container lookups by a header.
	RequestHeaders map[string]string `json:"RequestHeaders,omitempty"`
	// The Response* fields are not decoded: no rule looks at them, and
	// skipping them keeps each API call cheap.

	// FrontDoor is set by dockca gate, never by dockerd (it has no JSON
	// name): the request was parsed by the gate, which forwards exactly
	// what was judged, with one Content-Type of its choosing. A body the
	// gate streams instead of judging is then a data stream dockerd cannot
	// read as parameters, not a hidden body.
	FrontDoor bool `json:"-"`
}

// Response is the plugin's answer. Msg is shown to the docker user on a
// denial; Err makes dockerd answer 500 instead of 403.
type Response struct {
	Allow bool   `json:"Allow"`
	Msg   string `json:"Msg,omitempty"`
	Err   string `json:"Err,omitempty"`
}

// checkResponseCall checks the /AuthZPlugin.AuthZRes call. The request was
// judged (and run) before this call, so nothing in it can change the
// outcome; only its shape is checked — one JSON object naming a method and
// a URI — without decoding the response body and headers it carries, which
// are often its largest part and would double the plugin's cost per call.
func checkResponseCall(r io.Reader, size int64) error {
	data, err := readLimited(r, size)
	if err != nil {
		return err
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' || !json.Valid(data) {
		return fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	if !bytes.Contains(data, []byte(`"RequestMethod":`)) || !bytes.Contains(data, []byte(`"RequestUri":"/`)) {
		return fmt.Errorf("%w: missing RequestMethod or RequestUri", ErrMalformed)
	}
	return nil
}

// readLimited reads a plugin request of at most maxPluginRequest bytes,
// sized up front from Content-Length when dockerd sent one.
func readLimited(r io.Reader, size int64) ([]byte, error) {
	var buf bytes.Buffer
	if size > 0 && size <= maxPluginRequest {
		buf.Grow(int(size) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(r, maxPluginRequest+1)); err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrMalformed, err)
	}
	if buf.Len() > maxPluginRequest {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, maxPluginRequest)
	}
	return buf.Bytes(), nil
}

// DecodeRequest reads one plugin request. It checks only what every request
// must have; the certificates are parsed by the decision so that a bad one
// is reported with the user's name.
func DecodeRequest(r io.Reader) (*Request, error) {
	return decodeRequest(r, -1)
}

func decodeRequest(r io.Reader, size int64) (*Request, error) {
	data, err := readLimited(r, size)
	if err != nil {
		return nil, err
	}
	var req Request
	// Unmarshal also refuses trailing data after the object.
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if req.RequestMethod == "" || strings.ContainsAny(req.RequestMethod, " \t\r\n") {
		return nil, fmt.Errorf("%w: missing or invalid RequestMethod", ErrMalformed)
	}
	if !strings.HasPrefix(req.RequestURI, "/") {
		return nil, fmt.Errorf("%w: missing or invalid RequestUri", ErrMalformed)
	}
	return &req, nil
}

// parsePeerCertificates turns the PEM entries into certificates. Exactly one
// CERTIFICATE block per entry is accepted: anything else means the request
// was not built by dockerd.
func parsePeerCertificates(entries [][]byte) ([]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, 0, len(entries))
	for i, e := range entries {
		block, rest := pem.Decode(e)
		if block == nil || block.Type != pki.PEMTypeCertificate {
			return nil, fmt.Errorf("peer certificate %d is not PEM", i)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("peer certificate %d has trailing data", i)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("peer certificate %d: %w", i, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}
