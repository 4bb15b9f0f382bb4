package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// StatusError is an error response of the service.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// maxResponseBytes bounds what a client reads back.
const maxResponseBytes = 1 << 20

// Do sends in (nil: no body) as JSON and decodes a 2xx response into out
// (nil: ignored). Error responses become *StatusError.
func Do(ctx context.Context, hc *http.Client, method, url string, in, out any) error {
	return DoLimit(ctx, hc, method, url, in, out, maxResponseBytes)
}

// DoLimit is Do reading at most limit bytes of response.
func DoLimit(ctx context.Context, hc *http.Client, method, url string, in, out any, limit int64) error {
	return do(ctx, hc, method, url, nil, in, out, limit)
}

// DoHeader is Do with more request headers.
func DoHeader(ctx context.Context, hc *http.Client, method, url string, hdr http.Header, in, out any) error {
	return do(ctx, hc, method, url, hdr, in, out, maxResponseBytes)
}

func do(ctx context.Context, hc *http.Client, method, url string, hdr http.Header, in, out any, limit int64) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return &StatusError{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// IsStatus reports whether err is a *StatusError with one of the codes.
func IsStatus(err error, codes ...int) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.Status == c {
			return true
		}
	}
	return false
}
