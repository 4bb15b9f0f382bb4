package daemonsetup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// LiveRestoreKey is daemon.json's key that keeps containers running while
// dockerd restarts: dockerd reads its TLS files only at start, so every
// renewal of a natively-TLS daemon's certificate (and every CA rotation)
// ends in a restart.
const LiveRestoreKey = "live-restore"

// LiveRestoreEnabled reports whether the daemon.json at path sets
// "live-restore": true. A missing file is dockerd's default: off.
func LiveRestoreEnabled(path string) (bool, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	v, ok := cfg[LiveRestoreKey]
	if !ok {
		return false, nil
	}
	var on bool
	if err := json.Unmarshal(v, &on); err != nil {
		return false, fmt.Errorf("%s: %q: want true or false, got %s", path, LiveRestoreKey, v)
	}
	return on, nil
}

// LiveRestoreWarning is the warning for a restart of the dockerd configured
// at path, or "" when live-restore is on there (or the file cannot say).
func LiveRestoreWarning(path string) string {
	on, err := LiveRestoreEnabled(path)
	switch {
	case err != nil:
		return fmt.Sprintf("cannot tell whether live-restore is on (%v): restarting dockerd may stop its containers", err)
	case on:
		return ""
	}
	return fmt.Sprintf("live-restore is off in %s: restarting dockerd to load the renewed certificate stops its containers; "+
		"set it with 'dockca daemon setup HOST --live-restore' (or \"live-restore\": true), or put the daemon behind 'dockca gate', which needs no restart", path)
}

// liveRestoreEdit adds "live-restore": true to another daemon.json edit.
func liveRestoreEdit(inner func(map[string]json.RawMessage) error) func(map[string]json.RawMessage) error {
	return func(cfg map[string]json.RawMessage) error {
		if err := inner(cfg); err != nil {
			return err
		}
		cfg[LiveRestoreKey] = json.RawMessage("true")
		return nil
	}
}
