package authz

import (
	"context"
	"fmt"
	"io"

	"github.com/dockca/dockca/internal/systemdunit"
)

// UnitName is the systemd unit `dockca authz install` writes.
const UnitName = "dockca-authz.service"

// UnitOptions describe the plugin's unit; the plugin directory is always
// writable besides WritablePaths.
type UnitOptions = systemdunit.Command

// RenderUnit returns the text of dockca-authz.service. The unit starts
// before docker.service so that the plugin socket exists when dockerd first
// needs it; the hardening keeps the plugin, which decides root access to the
// host, from doing anything but read its inputs and serve its socket.
func RenderUnit(o UnitOptions) (string, error) {
	return systemdunit.Render(systemdunit.Spec{
		Comment: []string{
			"Written by dockca authz install. While this plugin is down every docker",
			"call hangs about 30 s (dockerd retries the plugin) and then fails: the unit",
			"restarts it at once, without a start limit; \"dockca authz status\" tells",
			"whether it answers.",
		},
		Description: "dockca authorization plugin for the Docker Engine",
		Before:      []string{"docker.service"},
		Exec:        o.Exec, Args: o.Args,
		WritablePaths: append([]string{PluginDir}, o.WritablePaths...),
	})
}

// WriteResult says what WriteUnit did.
type WriteResult = systemdunit.Result

const (
	Unchanged = systemdunit.Unchanged
	Created   = systemdunit.Created
	Updated   = systemdunit.Updated
)

// WriteUnit writes the unit text to dir/dockca-authz.service atomically
// (0644, as systemd units are) unless it already says exactly that.
func WriteUnit(dir, text string) (string, WriteResult, error) {
	return systemdunit.Write(dir, UnitName, text)
}

// DefaultSystemdDir is where `dockca authz install` puts the unit.
const DefaultSystemdDir = "/etc/systemd/system"

// InstallOptions configure InstallUnit.
type InstallOptions struct {
	SystemdDir string // default DefaultSystemdDir
	Unit       UnitOptions
}

// InstallUnit renders and writes dockca-authz.service and tells the admin
// what to run next. daemon.json is not touched here: the caller merges
// "authorization-plugins" with the shared daemon.json merge and then the
// admin sends dockerd SIGHUP.
func InstallUnit(ctx context.Context, o InstallOptions, w io.Writer) (WriteResult, error) {
	if err := ctx.Err(); err != nil {
		return Unchanged, err
	}
	if o.SystemdDir == "" {
		o.SystemdDir = DefaultSystemdDir
	}
	text, err := RenderUnit(o.Unit)
	if err != nil {
		return Unchanged, err
	}
	name, res, err := WriteUnit(o.SystemdDir, text)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(w, "%s: %s\n", name, res)
	fmt.Fprintf(w, "start it before dockerd needs it: systemctl daemon-reload && systemctl enable --now %s\n", UnitName)
	return res, nil
}

// ReloadHint is what to tell the admin once daemon.json lists the plugin.
func ReloadHint(name string) string {
	return fmt.Sprintf("daemon.json now lists authorization plugin %q; send dockerd SIGHUP to load it (systemctl reload docker, or kill -HUP $(pidof dockerd)). While the plugin is down dockerd refuses every request: systemctl restart %s restores access.", name, UnitName)
}
