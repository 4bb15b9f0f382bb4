package contexts

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// A marker written before URL lists (one ca_url) names that service; one
// with several keeps the first in ca_url for older readers and all of them
// in ca_urls; a local CA's names none. Each round-trips unchanged.
func TestMarkerServiceURLs(t *testing.T) {
	for file, want := range map[string][]string{
		"testdata/marker-one-url.json":  {"https://ca.example:8443"},
		"testdata/marker-two-urls.json": {"https://ca1.example:8443", "https://ca2.example:8443"},
		"testdata/marker-local.json":    nil,
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var m Marker
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if got := m.serviceURLs(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: service URLs %q, want %q", file, got, want)
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back, orig map[string]any
		json.Unmarshal(again, &back)
		json.Unmarshal(b, &orig)
		if !reflect.DeepEqual(back, orig) {
			t.Errorf("%s does not round-trip:\n%s\n%s", file, b, again)
		}
	}
}
