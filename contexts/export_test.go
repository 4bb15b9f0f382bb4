package contexts

import "github.com/docker/cli/cli/context/store"

// SetHookBeforeSwap lets the external tests stop a TLS replacement at its
// most dangerous moment; it is reset when the test ends.
func SetHookBeforeSwap(f func(stage string) error) (reset func()) {
	testHookBeforeSwap = f
	return func() { testHookBeforeSwap = nil }
}

// SetNoExchange forces the fallback swap for filesystems without
// RENAME_EXCHANGE.
func SetNoExchange() (reset func()) {
	testNoExchange = true
	return func() { testNoExchange = false }
}

// InstallTLSOnly does the first half of a renewal — the swap — and not the
// metadata update, as a process killed between the two would.
func InstallTLSOnly(o Options, name string, m *Material) error {
	return installTLS(openStore(o), name, m)
}

var _ store.Reader = openStore(Options{})
