package authz

import (
	"path"
	"testing"
)

// TestCutVersion: the hand-written split of the API version agrees with
// the regexp it replaces (versionPrefix on the path plus a slash).
func TestCutVersion(t *testing.T) {
	for _, p := range []string{"/", "/v", "/v/", "/v1", "/v1.41", "/v1.41/", "/v1.41/containers/json", "/v.", "/v..", "/v1..2/x",
		"/vx/containers", "/v1x/containers", "/v1.41x/y", "/version", "/v1.41/v1.40/x", "/containers/v1.41/json", "/_ping", "/v12345/a/b"} {
		v, rest, ok := cutVersion(p)
		m := versionPrefix.FindStringSubmatchIndex(p + "/")
		if ok != (m != nil) {
			t.Fatalf("%q: cut %v, regexp %v", p, ok, m != nil)
		}
		if ok && (v != (p + "/")[m[2]:m[3]] || path.Clean("/"+rest) != path.Clean("/"+(p + "/")[m[1]:])) {
			t.Fatalf("%q: cut %q %q, regexp %q %q", p, v, rest, (p + "/")[m[2]:m[3]], (p + "/")[m[1]:])
		}
	}
}
