package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/report"
)

const sdxl = "stable-diffusion-xl-1024-v1-0"

// starterArgs are the init flags of every starter: each service of the
// catalogue, and the v1 engine the current sheet prices.
func starterArgs() [][]string {
	var out [][]string
	for _, s := range catalog.Services() {
		out = append(out, []string{"--service", s})
	}
	return append(out, []string{"--engine", sdxl})
}

// initStarter writes the starter of flags into a new folder and returns its
// path.
func initStarter(t *testing.T, flags []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "starter.yaml")
	r := batchCmd(t, nil, append(append([]string{"init"}, flags...), path)...)
	if r.code != exitOK {
		t.Fatalf("init %v: exit %d\n%s", flags, r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("init %v FILE wrote to stdout:\n%s", flags, r.stdout)
	}
	return path
}

// planJSON plans the manifest at path and returns the plan.
func planJSON(t *testing.T, path string) *planDoc {
	t.Helper()
	r := batchCmd(t, nil, "plan", "--format", "json", path)
	if r.code != exitOK {
		t.Fatalf("plan %s: exit %d\n%s", path, r.code, r.stderr)
	}
	var p planDoc
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// settingLine is a commented setting of a starter, ready to uncomment.
var settingLine = regexp.MustCompile(`(?m)^    # ([a-z_]+: .*)$`)

// TestInitPlansEveryOperation: the starter of every service and of SDXL
// plans as it is, with the schema line first, a budget that holds its
// estimate, and an image input for a service that needs one; with every
// commented setting uncommented it still plans.
func TestInitPlansEveryOperation(t *testing.T) {
	for _, flags := range starterArgs() {
		t.Run(flags[1], func(t *testing.T) {
			path := initStarter(t, flags)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			text := string(data)
			if !strings.HasPrefix(text, "# yaml-language-server: $schema=batch.schema.json\n") {
				t.Errorf("starter does not start with the schema line:\n%s", text)
			}
			if want := "#   batch schema > " + filepath.ToSlash(filepath.Join(filepath.Dir(path), "batch.schema.json")); !strings.Contains(text, want) {
				t.Errorf("starter does not say how to make its schema (%q):\n%s", want, text)
			}
			p := planJSON(t, path)
			if p.Budget == nil || p.OverBudget || *p.Budget-p.TotalCredits >= cost.Credit {
				t.Errorf("starter: budget %v for an estimate of %v, want the estimate rounded up to a credit", p.Budget, p.TotalCredits)
			}
			last := p.Jobs[len(p.Jobs)-1]
			if flags[0] == "--service" && last.Service != flags[1] {
				t.Errorf("starter's last job runs %q, want %q", last.Service, flags[1])
			}
			if op, ok := catalog.Lookup(flags[1]); ok && op.TakesImages() && hasRequiredImage(op) && len(last.DependsOn) == 0 {
				t.Errorf("starter's %s job takes no image from another job", flags[1])
			}

			settings := settingLine.FindAllStringSubmatch(text, -1)
			if len(settings) == 0 {
				t.Fatalf("starter lists no other settings:\n%s", text)
			}
			all := settingLine.ReplaceAllString(text, "    $1")
			if err := os.WriteFile(path, []byte(all), 0o644); err != nil {
				t.Fatal(err)
			}
			r := batchCmd(t, nil, "plan", path)
			if r.code != exitOK && r.code != exitOverBudget {
				t.Errorf("starter with its %d commented settings uncommented: exit %d\n%s\n%s", len(settings), r.code, r.stderr, all)
			}
		})
	}
}

func hasRequiredImage(op *catalog.Operation) bool {
	for _, f := range op.Fields {
		if f.Type == catalog.Image && f.Required {
			return true
		}
	}
	return false
}

// TestInitRunsOnSandbox: starters of Core, SD 3.5, an edit service, an
// async service and SDXL run on the sandbox as they are, every job
// succeeding.
func TestInitRunsOnSandbox(t *testing.T) {
	for _, flags := range [][]string{
		{"--service", "generate/core"},
		{"--service", "generate/sd3"},
		{"--service", "edit/search-and-replace"},
		{"--service", "upscale/creative"}, // async
		{"--engine", sdxl},
	} {
		t.Run(flags[1], func(t *testing.T) {
			path := initStarter(t, flags)
			out := filepath.Join(t.TempDir(), "out")
			r := batchCmd(t, nil, "run", "--sandbox", "--out", out, path)
			if r.code != exitOK {
				t.Fatalf("run --sandbox on the %s starter: exit %d\n%s", flags[1], r.code, r.stderr)
			}
			rep, err := report.ReadRun(out)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Totals.Jobs == 0 || rep.Totals.Succeeded != rep.Totals.Jobs {
				t.Errorf("run --sandbox on the %s starter: totals %+v, want every job to succeed", flags[1], rep.Totals)
			}
		})
	}
}

// TestInitGolden holds the text of two starters: a text-to-image service's
// and an image service's, written to stdout.
func TestInitGolden(t *testing.T) {
	for _, tt := range []struct{ name, service string }{
		{"core", "generate/core"},
		{"search-and-replace", "edit/search-and-replace"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := batchCmd(t, nil, "init", "--service", tt.service, "-")
			if r.code != exitOK || r.stderr != "" {
				t.Fatalf("init --service %s -: exit %d\n%s", tt.service, r.code, r.stderr)
			}
			checkGolden(t, "init-"+tt.name+".yaml", r.stdout)
		})
	}
}

// TestInitDefaultFile: with no FILE, init writes batch.yaml in the current
// folder, names the manifest after it, and says what to run next.
func TestInitDefaultFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	r := batchCmd(t, nil, "init")
	if r.code != exitOK {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	data, err := os.ReadFile(filepath.Join(dir, "batch.yaml"))
	if err != nil {
		t.Fatalf("init wrote no batch.yaml: %v", err)
	}
	for _, want := range []string{"\nname: batch\n", "\nservice: generate/core ", "#   batch schema > batch.schema.json\n", "#   batch plan batch.yaml "} {
		if !strings.Contains(string(data), want) {
			t.Errorf("batch.yaml lacks %q:\n%s", want, data)
		}
	}
	if want := "batch plan batch.yaml\n"; !strings.Contains(r.stderr, want) {
		t.Errorf("init's message lacks %q:\n%s", want, r.stderr)
	}
}

// TestInitNeverOverwrites: a FILE that exists, even as a dangling symlink,
// is left as it is, with exit 2.
func TestInitNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	existing := writeFile(t, dir, "mine.yaml", "my own work\n")
	paths := []string{existing}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(filepath.Join(dir, "nowhere.yaml"), link); err == nil {
		paths = append(paths, link)
	}
	for _, path := range paths {
		r := batchCmd(t, nil, "init", path)
		if r.code != exitUsage || !strings.Contains(r.stderr, "already exists") {
			t.Errorf("init %s (exists): exit %d, want 2 and \"already exists\"\n%s", path, r.code, r.stderr)
		}
	}
	if data, err := os.ReadFile(existing); err != nil || string(data) != "my own work\n" {
		t.Errorf("init changed an existing file: %q, %v", data, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere.yaml")); !os.IsNotExist(err) {
		t.Errorf("init wrote through a dangling symlink (lstat: %v)", err)
	}
}

func TestInitUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown service", []string{"init", "--service", "generate/coer", "-"}, exitUsage, "generate/core, generate/sd3"},
		{"unknown engine", []string{"init", "--engine", "sdxl", "-"}, exitUsage, "prices " + sdxl},
		{"retired engine", []string{"init", "--engine", "stable-diffusion-v1-5", "-"}, exitUsage, "prices " + sdxl},
		{"both", []string{"init", "--service", "generate/core", "--engine", sdxl, "-"}, exitUsage, "not both"},
		{"two files", []string{"init", "a.yaml", "b.yaml"}, exitUsage, "too many arguments"},
		{"no folder", []string{"init", filepath.Join(t.TempDir(), "no", "such", "x.yaml")}, exitUsage, "no such file"},
		{"help", []string{"init", "-h"}, exitOK, "usage: batch init"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := batchCmd(t, nil, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("batch %v: exit %d, want %d and %q in stderr:\n%s", tt.args, r.code, tt.code, tt.stderr, r.stderr)
			}
			if r.code != exitOK && r.stdout != "" {
				t.Errorf("batch %v failed but wrote to stdout:\n%s", tt.args, r.stdout)
			}
		})
	}
}
