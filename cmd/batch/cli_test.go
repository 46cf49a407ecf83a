package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelp: 'batch help COMMAND' prints that command's synopsis and flags
// to stdout, as 'batch COMMAND -h' does to stderr; 'batch help' alone the
// general usage.
func TestHelp(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{[]string{"help"}, exitOK, "Usage:\n  batch init", ""},
		{[]string{"help", "run"}, exitOK, "usage: batch run [flags] MANIFEST", ""},
		{[]string{"help", "run"}, exitOK, "-sandbox", ""},
		{[]string{"help", "diff"}, exitOK, "-fail-increase PERCENT", ""},
		{[]string{"help", "init"}, exitOK, "-service service", ""},
		{[]string{"--help", "plan"}, exitOK, "usage: batch plan", ""},
		{[]string{"help", "frobnicate"}, exitUsage, "", `unknown command "frobnicate" (commands: init, plan, run`},
		{[]string{"help", "run", "plan"}, exitUsage, "", "give one command"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := batchCmd(t, nil, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("batch %v: exit %d, want %d, %q in stdout and %q in stderr\nstdout:\n%s\nstderr:\n%s",
					tt.args, r.code, tt.code, tt.stdout, tt.stderr, r.stdout, r.stderr)
			}
		})
	}
	// Every command's help is its own, not the general usage.
	for _, c := range commands() {
		r := batchCmd(t, nil, "help", c)
		if r.code != exitOK || !strings.HasPrefix(r.stdout, "usage: batch "+c) {
			t.Errorf("batch help %s: exit %d, stdout starts %.40q, want its usage line", c, r.code, r.stdout)
		}
	}
}

// TestHelpShowsNoMadeUpDefaults: no flag's help shows a sentinel such as
// -1 as its default.
func TestHelpShowsNoMadeUpDefaults(t *testing.T) {
	for _, c := range commands() {
		r := batchCmd(t, nil, c, "-h")
		if strings.Contains(r.stderr, "(default -") {
			t.Errorf("batch %s -h shows a negative default:\n%s", c, r.stderr)
		}
	}
	r := batchCmd(t, nil, "diff", "--fail-increase", "-5", "a.yaml", "b.yaml")
	if r.code != exitUsage || !strings.Contains(r.stderr, "not a percentage") {
		t.Errorf("diff --fail-increase -5: exit %d, want 2\n%s", r.code, r.stderr)
	}
}

// TestMissingInputsExit2: a manifest, run folder or plan file that does not
// exist is a mistake in the command line (exit 2), not a failed run.
func TestMissingInputsExit2(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	good := writeFile(t, dir, "good.yaml", "version: 1\nservice: generate/core\njobs:\n  - prompt: a cat\n")
	for _, args := range [][]string{
		{"plan", missing},
		{"run", "--sandbox", "--out", filepath.Join(dir, "out"), missing},
		{"diff", missing, good},
		{"diff", good, filepath.Join(dir, "missing.json")},
		{"report", filepath.Join(dir, "no-run")},
		{"report", filepath.Join(dir, "missing.json")},
	} {
		r := batchCmd(t, nil, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "no such file") {
			t.Errorf("batch %v: exit %d, want 2 and \"no such file\"\n%s", args, r.code, r.stderr)
		}
	}
}

// TestSandboxRefusesAPIURL: --api-url with --sandbox is refused before
// anything is planned or written, rather than silently ignored.
func TestSandboxRefusesAPIURL(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r := batchCmd(t, nil, "run", "--sandbox", "--api-url", "https://api.example.com", "--out", out, "../../examples/quickstart.yaml")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--api-url and --sandbox") {
		t.Errorf("run --sandbox --api-url: exit %d, want 2 and a message naming both\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run --sandbox --api-url made %s (stat: %v)", out, err)
	}
	// --sandbox=false with --api-url is an ordinary run (here: no key).
	r = batchCmd(t, nil, "run", "--sandbox=false", "--api-url", "https://api.example.com", "--out", out, "../../examples/quickstart.yaml")
	if strings.Contains(r.stderr, "--api-url and --sandbox") {
		t.Errorf("run --sandbox=false --api-url was refused as a combination:\n%s", r.stderr)
	}
}
