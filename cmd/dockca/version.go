package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// version and commit are set by the Makefile (-ldflags -X) from git
// describe; a plain go build leaves them empty and the build info that the
// go command embeds (module version, vcs.revision) is used instead.
var (
	version string
	commit  string
)

// smallstepModule is the embedded authority whose version is reported.
const smallstepModule = "github.com/smallstep/certificates"

// versionInfo is what dockca version and --version print.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Modified  bool   `json:"modified,omitempty"`
	Go        string `json:"go"`
	Smallstep string `json:"smallstep"`
}

// buildVersion reads the version from the linker flags, else from the
// build info; what neither knows is "unknown", never empty.
func buildVersion(bi *debug.BuildInfo, ok bool, ldVersion, ldCommit string) versionInfo {
	v := versionInfo{Version: ldVersion, Commit: ldCommit}
	if ok {
		if v.Version == "" && bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		v.Go = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if v.Commit == "" {
					v.Commit = s.Value
				}
			case "vcs.modified":
				if ldCommit == "" {
					v.Modified = s.Value == "true"
				}
			}
		}
		for _, d := range bi.Deps {
			if d.Path == smallstepModule {
				v.Smallstep = d.Version
				if d.Replace != nil {
					v.Smallstep = d.Replace.Version + " (replaced)"
				}
			}
		}
	}
	for _, p := range []*string{&v.Version, &v.Commit, &v.Go, &v.Smallstep} {
		if *p == "" {
			*p = "unknown"
		}
	}
	return v
}

func currentVersion() versionInfo {
	bi, ok := debug.ReadBuildInfo()
	return buildVersion(bi, ok, version, commit)
}

func writeVersion(w io.Writer, v versionInfo) {
	c := v.Commit
	if v.Modified {
		c += "-modified"
	}
	fmt.Fprintf(w, "dockca %s (commit %s)\n", v.Version, c)
	fmt.Fprintf(w, "go %s\n", strings.TrimPrefix(v.Go, "go"))
	fmt.Fprintf(w, "smallstep/certificates %s\n", v.Smallstep)
}

func init() {
	// --version only: urfave's default alias -v is too easily meant as
	// "verbose".
	cli.VersionFlag = &sharedBoolFlag{cli.BoolFlag{Name: "version", Usage: "print dockca's version and exit"}}
	cli.VersionPrinter = func(c *cli.Context) { writeVersion(c.App.Writer, currentVersion()) }
}

func newVersionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print dockca's version and commit, and the Go and smallstep versions it was built with",
		UsageText: "dockca version [--format TEMPLATE]",
		Description: "Same as dockca --version. --format takes a Go template over .Version, .Commit, .Modified, .Go and\n" +
			".Smallstep ('{{json .}}' prints JSON).",
		Flags: []cli.Flag{formatFlag()},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			v := currentVersion()
			if f := c.String("format"); f != "" {
				return writeFormatted(c, []any{v}, f, nil)
			}
			writeVersion(c.App.Writer, v)
			return nil
		},
	}
}
