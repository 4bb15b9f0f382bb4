package authz

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if kind := os.Getenv("DOCKCA_AUTHZ_HELPER"); kind != "" {
		os.Exit(runHelperPlugin(kind))
	}
	os.Exit(m.Run())
}
