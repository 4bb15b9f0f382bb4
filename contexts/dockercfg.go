package contexts

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/docker/cli/cli/config"

	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/internal/jsonobj"
)

// currentContext is the context config.json selects ("" for default). A
// config.json the docker CLI cannot parse is an error, not "default".
func currentContext(configDir string) (string, error) {
	cf, err := config.Load(configDir)
	if err != nil {
		return "", err
	}
	return cf.CurrentContext, nil
}

// checkConfigFile fails when config.json exists but the docker CLI would
// not load it: dockca then refuses to edit it rather than replace it.
func checkConfigFile(configDir string) error {
	_, err := config.Load(configDir)
	return err
}

// setCurrentContext sets (or, with name "", removes) currentContext in
// config.json. It edits only that key: the docker CLI's own
// LoadDefaultConfigFile+Save would drop keys its struct does not know and
// may add a detected credsStore, and auths, credential helpers, proxies and
// plugin settings must come through unchanged.
func setCurrentContext(configDir, name string) error {
	if err := checkConfigFile(configDir); err != nil {
		return err
	}
	path := filepath.Join(configDir, config.ConfigFileName)
	data, err := os.ReadFile(path)
	mode := os.FileMode(0o600) // config.json may hold registry credentials
	switch {
	case errors.Is(err, os.ErrNotExist):
		data = nil
	case err != nil:
		return err
	default:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	obj, err := jsonobj.Decode(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if name == "" {
		if _, ok := obj.Values["currentContext"]; !ok {
			return nil
		}
		delete(obj.Values, "currentContext")
	} else {
		v, _ := json.Marshal(name)
		if jsonobj.Equal(obj.Values["currentContext"], v) {
			return nil
		}
		obj.Values["currentContext"] = v
	}
	out, err := obj.Encode("\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(configDir, 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, out, mode)
}
