package serve_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/serve"
)

// The CRL, roots and health polls every plugin and client makes are
// logged at debug level; requests that change something, and failures,
// at info.
func TestRoutinePollsLogAtDebug(t *testing.T) {
	ts := startServer(t, serve.Options{})
	hc := ts.httpsClient(nil)
	for _, p := range []string{api.PathCRL, api.PathCRL + "?format=pem", api.PathRoots, api.PathHealthz} {
		resp, err := hc.Get(ts.URL() + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", p, resp.Status)
		}
	}
	// A failed signing is logged at info.
	resp, err := hc.Post(ts.URL()+api.PathSign, "application/json", strings.NewReader(`{"csr": "x", "token": "y"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	logs := ts.logs.String()
	for _, route := range []string{"route=crl", "route=roots", "route=healthz"} {
		if strings.Contains(logs, route) {
			t.Errorf("a routine %s request was logged at info:\n%s", route, logs)
		}
	}
	if !strings.Contains(logs, "route=sign") {
		t.Errorf("a failed signing was not logged:\n%s", logs)
	}
}
