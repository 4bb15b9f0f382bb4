package gate

import "github.com/dockca/dockca/internal/systemdunit"

// UnitName is the systemd unit `dockca daemon setup --gate` writes.
const UnitName = "dockca-gate.service"

// UnitOptions describe the gate's unit, e.g. Args {"--home",
// "/var/lib/dockca", "gate", "--listen", "0.0.0.0:2376"}.
type UnitOptions = systemdunit.Command

// RenderUnit returns the text of dockca-gate.service: after docker.service
// (the gate forwards to its socket), with the plugin's hardening.
func RenderUnit(o UnitOptions) (string, error) {
	return systemdunit.Render(systemdunit.Spec{
		Comment: []string{
			"Written by dockca daemon setup --gate. dockerd listens only on its unix",
			"socket; this gate serves the Docker API over mutual TLS, judging every",
			"request. It reloads its certificate when renew --watch replaces it: no",
			"restart is needed.",
		},
		Description: "dockca gate: mutual-TLS front door for the Docker Engine API",
		After:       []string{"docker.service"},
		Wants:       []string{"docker.service"},
		Exec:        o.Exec, Args: o.Args, WritablePaths: o.WritablePaths,
	})
}
