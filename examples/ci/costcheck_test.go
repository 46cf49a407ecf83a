// Package ci_test runs examples/ci/cost-check.sh, the script both example
// CI pipelines call, against a temporary git repository.
package ci_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/report"
)

const baseManifest = `version: 1
name: shots
engine: stable-diffusion-xl-1024-v1-0
defaults:
  width: 1024
  height: 1024
  steps: 30
jobs:
  - id: mug
    prompt: a ceramic mug on a wooden table
  - id: lamp
    prompt: a desk lamp
`

// headManifest raises mug's steps and adds a job.
const headManifest = `version: 1
name: shots
engine: stable-diffusion-xl-1024-v1-0
defaults:
  width: 1024
  height: 1024
  steps: 30
jobs:
  - id: mug
    prompt: a ceramic mug on a wooden table
    steps: 50
  - id: lamp
    prompt: a desk lamp
  - id: chair
    prompt: an oak chair
    samples: 2
`

// fixture is a git repository with a main branch and a feature branch that
// changes a manifest.
type fixture struct {
	t     *testing.T
	dir   string
	batch string // the built batch binary
}

// batchBinary is the batch binary TestMain built, or "" when cmd/batch
// does not build; buildErr says why.
var batchBinary, buildErr string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "batch-ci-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "batch")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/batch").CombinedOutput(); err != nil {
		buildErr = fmt.Sprintf("%v\n%s", err, out)
	} else {
		batchBinary = bin
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBatch returns the built batch binary. It fails the test when
// cmd/batch does not build, and skips it when a tool the script needs is
// missing.
func buildBatch(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"bash", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("cost-check.sh needs %s: %v", tool, err)
		}
	}
	if batchBinary == "" {
		t.Fatalf("cmd/batch does not build, so cost-check.sh cannot run: %s", buildErr)
	}
	return batchBinary
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), batch: buildBatch(t)}
	f.git("init", "-q", "-b", "main")
	f.git("config", "user.email", "ci@example.com")
	f.git("config", "user.name", "CI")
	f.git("config", "commit.gpgsign", "false")
	f.write("manifests/shots.yaml", baseManifest)
	f.write(".github/workflows/build.yml", "on: push\njobs: {}\n") // YAML, but no manifest
	f.commit("base")
	f.git("checkout", "-q", "-b", "feature")
	return f
}

func (f *fixture) git(args ...string) string {
	f.t.Helper()
	cmd := exec.CommandContext(f.t.Context(), "git", args...)
	cmd.Dir = f.dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		f.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (f *fixture) write(name, content string) {
	f.t.Helper()
	path := filepath.Join(f.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) commit(msg string) {
	f.t.Helper()
	f.git("add", "-A")
	f.git("commit", "-q", "-m", msg)
}

// check runs cost-check.sh BASE in the repository with extra environment
// and returns the Markdown report and the exit code.
func (f *fixture) check(base string, env ...string) (string, int) {
	f.t.Helper()
	script, err := filepath.Abs("cost-check.sh")
	if err != nil {
		f.t.Fatal(err)
	}
	reportPath := filepath.Join(f.t.TempDir(), "cost-report.md")
	cmd := exec.CommandContext(f.t.Context(), "bash", script, base)
	cmd.Dir = f.dir
	cmd.Env = append(os.Environ(), "BATCH="+f.batch, "COST_REPORT="+reportPath,
		"COST_FAIL_ABOVE=", "COST_FAIL_INCREASE=", "GITHUB_STEP_SUMMARY=",
		"XDG_CACHE_HOME="+f.t.TempDir()) // plans read an image cache of their own, never the user's
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatalf("run cost-check.sh: %v", err)
	}
	md, err := os.ReadFile(reportPath)
	if err != nil {
		f.t.Fatalf("cost-check.sh wrote no report (exit %d): %v\nstderr:\n%s", code, err, stderr.String())
	}
	if stdout.String() != string(md) {
		f.t.Errorf("cost-check.sh stdout differs from its report file:\n%s\nvs\n%s", stdout.String(), md)
	}
	return string(md), code
}

// plan prices manifest text with the built binary, as `batch plan --format
// json` does, with the manifest at rel inside the repository.
func (f *fixture) plan(rel, text string) *report.Plan {
	f.t.Helper()
	dir := f.t.TempDir()
	path := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.CommandContext(f.t.Context(), f.batch, "plan", "--format", "json", filepath.FromSlash(rel))
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		f.t.Fatalf("batch plan %s: %v", rel, err)
	}
	planFile := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(planFile, out, 0o644); err != nil {
		f.t.Fatal(err)
	}
	p, err := report.ReadPlan(planFile)
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

func TestCostCheck(t *testing.T) {
	f := newFixture(t)
	f.write("manifests/shots.yaml", headManifest)
	f.commit("raise steps, add a chair")

	// What the comment must say, worked out independently of the script:
	// both versions planned by the binary and compared by report.Diff.
	d, err := report.Diff(f.plan("manifests/shots.yaml", baseManifest), f.plan("manifests/shots.yaml", headManifest))
	if err != nil {
		t.Fatal(err)
	}
	if d.TotalDeltaCredits <= 0 {
		t.Fatalf("head costs %s more than base, want an increase (fixture broken?)", d.TotalDeltaCredits)
	}
	var changes []string
	err = d.Each(func(j *report.DiffJob) error {
		changes = append(changes, j.ID+" "+j.Change)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(changes, ", "), "mug changed, chair added"; got != want {
		t.Fatalf("Diff(base, head) jobs = %s, want %s", got, want)
	}
	var want strings.Builder
	if err := report.WriteDiff(&want, report.FormatMarkdown, d); err != nil {
		t.Fatal(err)
	}

	md, code := f.check("main")
	if code != 0 {
		t.Fatalf("cost-check.sh main: exit %d, want 0\n%s", code, md)
	}
	if !strings.Contains(md, want.String()) {
		t.Errorf("cost-check.sh report lacks the diff of manifests/shots.yaml:\n%s\nwant it to contain:\n%s", md, want.String())
	}
	if strings.Contains(md, "build.yml") {
		t.Errorf("cost-check.sh reported a workflow file as a manifest:\n%s", md)
	}

	tests := []struct {
		name     string
		env      []string
		wantCode int
		want     string
	}{
		{"fail above zero", []string{"COST_FAIL_ABOVE=0"}, 3, "over the limit"},
		{"fail above just under the rise", []string{"COST_FAIL_ABOVE=" + (d.TotalDeltaCredits - 1).String()}, 3, "over the limit"},
		{"fail above the rise itself", []string{"COST_FAIL_ABOVE=" + d.TotalDeltaCredits.String()}, 0, "Cost diff"},
		{"fail increase 1%", []string{"COST_FAIL_INCREASE=1"}, 3, "over the limit"},
		{"fail increase 100000%", []string{"COST_FAIL_INCREASE=100000"}, 0, "Cost diff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md, code := f.check("main", tt.env...)
			if code != tt.wantCode || !strings.Contains(md, tt.want) {
				t.Errorf("cost-check.sh main with %v: exit %d, want %d and %q in:\n%s", tt.env, code, tt.wantCode, tt.want, md)
			}
		})
	}
}

func TestCostCheckNoChange(t *testing.T) {
	f := newFixture(t)
	// A new prompt costs the same.
	f.write("manifests/shots.yaml", strings.Replace(baseManifest, "a desk lamp", "a brass desk lamp", 1))
	f.commit("reword a prompt")
	md, code := f.check("main", "COST_FAIL_ABOVE=0")
	if code != 0 || !strings.Contains(md, "\n`manifests/shots.yaml`: no cost change\n") {
		t.Errorf("cost-check.sh after a prompt-only change: exit %d, want 0 and \"no cost change\":\n%s", code, md)
	}
	md, code = f.check("HEAD")
	if code != 0 || !strings.Contains(md, "No batch manifests changed.") {
		t.Errorf("cost-check.sh HEAD: exit %d, want 0 and no manifests:\n%s", code, md)
	}
}

func TestCostCheckNewAndBroken(t *testing.T) {
	f := newFixture(t)
	f.write("manifests/new.yaml", headManifest)
	f.commit("add a manifest")
	md, code := f.check("main", "COST_FAIL_INCREASE=50")
	// Any increase from a zero base crosses a percentage.
	if code != 3 || !strings.Contains(md, "(`manifests/new.yaml`)") || !strings.Contains(md, "added") {
		t.Errorf("cost-check.sh with a new manifest: exit %d, want 3 and its jobs added:\n%s", code, md)
	}

	f.write("manifests/shots.yaml", strings.Replace(baseManifest, "name: shots\n", "name: shots\nbudget: 0.5\n", 1))
	f.commit("set a budget below the cost")
	md, code = f.check("main")
	if code != 3 || !strings.Contains(md, "over budget") {
		t.Errorf("cost-check.sh with a manifest over its budget: exit %d, want 3 and \"over budget\":\n%s", code, md)
	}

	f.write("manifests/shots.yaml", strings.Replace(baseManifest, "steps: 30", "steps: 9000", 1))
	f.commit("break a manifest")
	md, code = f.check("main")
	if code != 2 || !strings.Contains(md, "does not plan") {
		t.Errorf("cost-check.sh with an invalid manifest: exit %d, want 2 and \"does not plan\":\n%s", code, md)
	}
}

// TestCostCheckAddedAndRemovedKeepTheSheet: a new or deleted manifest is
// compared with an empty plan, which has no price sheet of its own; the
// comment must not read as a change of sheet (a blank before the arrow).
func TestCostCheckAddedAndRemovedKeepTheSheet(t *testing.T) {
	f := newFixture(t)
	f.write("manifests/sdxl.yaml", strings.Replace(headManifest, "name: shots\n", "name: sdxl\npricing: sdxl-2024\n", 1))
	f.commit("add a manifest priced under sdxl-2024")
	md, code := f.check("main")
	if code != 0 || !strings.Contains(md, "(`manifests/sdxl.yaml`)") || !strings.Contains(md, "added") {
		t.Fatalf("cost-check.sh with a new manifest: exit %d, want 0 and its jobs added:\n%s", code, md)
	}
	if strings.Contains(md, "pricing ") {
		t.Errorf("cost-check.sh reports a change of price sheet for a new manifest:\n%s", md)
	}

	f.git("rm", "-q", "manifests/shots.yaml")
	f.commit("remove a manifest")
	md, code = f.check("main")
	if code != 0 || !strings.Contains(md, "`manifests/shots.yaml`") || !strings.Contains(md, "removed") {
		t.Fatalf("cost-check.sh with a removed manifest: exit %d, want 0 and its jobs removed:\n%s", code, md)
	}
	if strings.Contains(md, "pricing ") {
		t.Errorf("cost-check.sh reports a change of price sheet for a new or removed manifest:\n%s", md)
	}
}
