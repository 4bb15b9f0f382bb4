package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/dockca/dockca/internal/golden"
)

func TestParseSeverity(t *testing.T) {
	for in, want := range map[string]Severity{"critical": Critical, "HIGH": High, " medium ": Medium, "info": Info, "none": None} {
		got, err := ParseSeverity(in)
		if err != nil || got != want {
			t.Errorf("ParseSeverity(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "low", "crit", "3"} {
		if _, err := ParseSeverity(bad); err == nil {
			t.Errorf("ParseSeverity(%q) accepted", bad)
		}
	}
}

func TestExitCode(t *testing.T) {
	high := &Report{Findings: []Finding{{Severity: High}, {Severity: Info}}}
	info := &Report{Findings: []Finding{{Severity: Info}}}
	empty := &Report{}
	incomplete := errors.New("audit incomplete")
	cases := []struct {
		name   string
		r      *Report
		err    error
		failOn Severity
		want   int
	}{
		{"high finding, fail on high", high, nil, High, ExitFindings},
		{"high finding, fail on medium", high, nil, Medium, ExitFindings},
		{"high finding, fail on critical", high, nil, Critical, ExitOK},
		{"high finding, fail on none", high, nil, None, ExitOK},
		{"info only, fail on medium", info, nil, Medium, ExitOK},
		{"info only, fail on info", info, nil, Info, ExitFindings},
		{"nothing", empty, nil, High, ExitOK},
		{"incomplete", empty, incomplete, High, ExitError},
		{"incomplete with a finding", high, incomplete, High, ExitFindings},
		{"incomplete, fail on none", empty, incomplete, None, ExitError},
		{"no report", nil, incomplete, High, ExitError},
	}
	for _, tc := range cases {
		if got := ExitCode(tc.r, tc.err, tc.failOn); got != tc.want {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

// sampleReport is deliberately out of order: output must sort it.
func sampleReport() *Report {
	r := &Report{
		Targets: []TargetResult{
			{Target: "localhost", Port: 2376, State: StateClosed},
			{Target: "127.0.0.10", Port: 2376, State: StateOpen, Protocol: ProtoTLS, ClientCert: "required", TLSVersion: "TLS 1.3"},
			{Target: "127.0.0.9", Port: 2375, State: StateOpen, Protocol: ProtoHTTP, Docker: true,
				Engine: &Engine{Version: "20.10.24", APIVersion: "1.41", OS: "linux", Arch: "amd64"}},
			{Target: "127.0.0.9", Port: 2376, State: StateFiltered},
		},
		Findings: []Finding{
			{Target: "127.0.0.10", Port: 2376, Severity: Info, ID: "mtls-ok", Finding: "mutual TLS required and server certificate issued by this dockca CA", Detail: "issuer CN=dockca Intermediate CA"},
			{Target: "127.0.0.10", Port: 2376, Severity: High, ID: "cert-expiring", Finding: "server certificate expires within 30 days", Detail: "not valid after 2030-01-02T03:04:00Z (9 days left)"},
			{Target: "127.0.0.9", Port: 2375, Severity: Critical, ID: "plain-http-api", Finding: "plain-HTTP Docker API answers without authentication", Detail: "GET /_ping answered 200, GET /version 200;\nengine 20.10.24, os linux, arch amd64, api 1.41"},
		},
	}
	r.sort()
	return r
}

func TestWriteTableGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "report.txt", buf.Bytes())

	buf.Reset()
	if err := (&Report{Targets: []TargetResult{{Target: "127.0.0.1", Port: 2375, State: StateClosed}}}).WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "empty.txt", buf.Bytes())
}

func TestWriteJSONGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "report.json", buf.Bytes())

	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not read back: %v", err)
	}
	if back.Findings[0].Severity != Critical || back.Findings[0].ID != "plain-http-api" {
		t.Fatalf("read back %+v", back.Findings[0])
	}

	buf.Reset()
	if err := (&Report{}).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "{\n  \"targets\": [],\n  \"findings\": []\n}\n" {
		t.Fatalf("empty report JSON = %q", got)
	}
}
