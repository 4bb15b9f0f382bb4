package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestPolicyStoredAndReadFromAHome(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s, err := Open(Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Policy(ctx); !errors.Is(err, ErrNoPolicy) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("no policy: %v", err)
	}
	yaml := []byte("roles:\n  deployer:\n    extends: operator\n")
	if err := s.SetPolicy(ctx, &Policy{YAML: yaml, Roles: []string{"admin", "deployer"}, UpdatedBy: "t"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The plugin's local mode: a read-only open of the home.
	p, err := ReadPolicy(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.YAML) != string(yaml) || len(p.Roles) != 2 || len(p.SHA256) != 64 || p.ETag() != `"`+p.SHA256+`"` || p.UpdatedAt.IsZero() {
		t.Fatalf("read back %+v", p)
	}
	if _, err := ReadPolicy(ctx, filepath.Join(home, "missing")); !errors.Is(err, ErrNoCA) {
		t.Fatalf("a home without a database: %v", err)
	}
}
