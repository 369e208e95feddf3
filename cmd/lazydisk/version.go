package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the version lazydisk was built from, from its build info.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return versionOf(bi)
}

// versionOf is the version in bi: the module version of a binary built by
// `go install ...@VERSION` (or by go build in a checkout, which stamps a
// pseudo-version from the VCS), else the VCS revision a checkout was built
// at ("devel-" and 12 hex digits, "-dirty" with uncommitted changes), else
// "devel".
func versionOf(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	v := "devel-" + rev[:min(12, len(rev))]
	if modified == "true" {
		v += "-dirty"
	}
	return v
}

// versionLine is what `lazydisk version` and `lazydisk --version` print.
func versionLine() string {
	return fmt.Sprintf("lazydisk %s %s %s/%s\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// versionOutput is what version --format json prints.
type versionOutput struct {
	Version   string `json:"version"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

func newVersionCmd() *cobra.Command {
	format := "text"
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the lazydisk version",
		Example: "  lazydisk version\n  lazydisk --version\n  lazydisk version --format json",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkTextOrJSON("format", format); err != nil {
				return err
			}
			if format == "json" {
				return printJSON(cmd.OutOrStdout(), versionOutput{Version: version(), GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH})
			}
			fmt.Fprint(cmd.OutOrStdout(), versionLine())
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	_ = cmd.RegisterFlagCompletionFunc("format", completeTextJSON)
	return cmd
}
