package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// FuzzDecodeRequest feeds arbitrary bytes to the plugin's request decoder
// and, when they decode, to the decision: nothing may panic, and a request
// that carries certificates nobody signed is never allowed.
func FuzzDecodeRequest(f *testing.F) {
	p := newPKI(f)
	leaf := p.client(f, "fuzz", "operator")
	a := newTestAuthorizer(f, p, nil, nil)
	seed, _ := json.Marshal(tlsRequest(leaf, "POST", "/v1.41/containers/create", []byte(`{"HostConfig":{"Privileged":true}}`)))
	f.Add(seed)
	f.Add([]byte(`{"RequestMethod":"GET","RequestUri":"/_ping"}`))
	f.Add([]byte(`{"RequestMethod":"GET","RequestUri":"/_ping","RequestPeerCertificates":["aGVsbG8="]}`))
	f.Add([]byte(`{"RequestMethod":"GET","RequestUri":"/v1.41/../_ping?x=%zz"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = checkResponseCall(bytes.NewReader(data), int64(len(data)))
		req, err := DecodeRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		d := a.Decide(context.Background(), req)
		if d.Allow && len(req.RequestPeerCertificates) > 0 && !bytes.Equal(req.RequestPeerCertificates[0], pemCert(leaf.cert)) {
			t.Fatalf("allowed a request with a foreign certificate: %+v", d)
		}
		if !d.Allow && !strings.HasPrefix(d.Msg, "dockca: ") {
			t.Fatalf("denial without a dockca message: %+v", d)
		}
	})
}

// FuzzBodyInspection runs every check over arbitrary bodies and queries.
// Besides not panicking, a container-create body the check allows must not
// turn on Privileged the way dockerd reads it.
func FuzzBodyInspection(f *testing.F) {
	for _, c := range []string{
		`{"Image":"x","HostConfig":{"Privileged":true}}`,
		`{"Image":"x","privileged":true}`,
		`{"HostConfig":{"Binds":["/:/h"],"Mounts":[{"Type":"bind","Source":"/"}],"CapAdd":"SYS_ADMIN"}}`,
		`{"HostConfig":{"Mounts":[{"Type":"volume","VolumeOptions":{"DriverConfig":{"Options":{"device":"/","o":"bind"}}}}]}}`,
		`{"Devices":[{}],"DriverOpts":{"device":"/dev/sda"}}`,
		`{"HostConfig":{"SecurityOpt":["seccomp=unconfined","label:disable"],"Sysctls":{"a":"b"}}}`,
	} {
		f.Add([]byte(c), "networkmode=host&filters=%7B%22label%22%3A%5B%22a%22%5D%7D&fromImage=x")
	}
	f.Fuzz(func(t *testing.T, body []byte, rawQuery string) {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return
		}
		r := &request{method: "POST", path: "/x", query: q, body: body, limits: &hostLimits{hostPaths: []string{"/srv/allowed"}, logDrivers: defaultLogDrivers}}
		for _, name := range checkNames() {
			_ = checks[name](r)
		}
		if checkContainerCreate(r) == "" {
			var w struct {
				Privileged bool
				HostConfig *struct{ Privileged bool }
			}
			if json.Unmarshal(body, &w) == nil && (w.Privileged || w.HostConfig != nil && w.HostConfig.Privileged) {
				t.Fatalf("container-create allowed a privileged body: %s", body)
			}
		}
		_, _ = evalCondition(Condition{Field: "HostConfig.Runtime", Present: true}, r)
	})
}
