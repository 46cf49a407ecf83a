package main

import (
	"fmt"
	"runtime/debug"
	"text/tabwriter"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
)

func (e *env) schema(args []string) error {
	fs := newFlagSet("schema", "schema", e.stderr)
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	_, err := e.stdout.Write(manifest.Schema())
	return err
}

func (e *env) prices(args []string) error {
	fs := newFlagSet("prices", "prices [--pricing ID]", e.stderr)
	id := fs.String("pricing", "", "show the rules of the price sheet `ID` (default: list every sheet)")
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	if *id == "" {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tFROM\tTO\tTITLE")
		for _, s := range cost.Sheets() {
			def := ""
			if s.ID == cost.DefaultSheet {
				def = " (default)"
			}
			to := s.EffectiveTo
			if to == "" {
				to = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\n", s.ID, s.EffectiveFrom, to, s.Title, def)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "\nRun 'batch prices --pricing ID' for a sheet's rules and sources.")
		return nil
	}
	s, err := cost.LookupSheet(*id)
	if err != nil {
		return usageErrorf("--pricing: %v", err)
	}
	_, err = fmt.Fprint(e.stdout, s.Describe())
	return err
}

func (e *env) version(args []string) error {
	fs := newFlagSet("version", "version", e.stderr)
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	_, err := fmt.Fprintf(e.stdout, "batch %s\n", buildVersion())
	return err
}

// buildVersion is the module version the binary was built at (set by go
// install), with the VCS revision when the build recorded one.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}
