package ci_test

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/batch-tool/batch/examples/internal/shardtest"
	"github.com/batch-tool/batch/internal/report"
)

const shardsWorkflow = "github-actions-shards.yml"

// workflow is the part of a GitHub Actions workflow the tests read.
type workflow struct {
	On struct {
		WorkflowDispatch struct {
			Inputs map[string]struct {
				Default string `yaml:"default"`
			} `yaml:"inputs"`
		} `yaml:"workflow_dispatch"`
	} `yaml:"on"`
	Env  map[string]string `yaml:"env"`
	Jobs map[string]struct {
		Needs    yaml.Node `yaml:"needs"`
		If       string    `yaml:"if"`
		Strategy struct {
			FailFast *bool `yaml:"fail-fast"`
			Matrix   struct {
				Shard []int `yaml:"shard"`
			} `yaml:"matrix"`
		} `yaml:"strategy"`
		Steps []step `yaml:"steps"`
	} `yaml:"jobs"`
}

type step struct {
	Name             string            `yaml:"name"`
	Uses             string            `yaml:"uses"`
	Run              string            `yaml:"run"`
	If               string            `yaml:"if"`
	Env              map[string]string `yaml:"env"`
	With             map[string]string `yaml:"with"`
	WorkingDirectory string            `yaml:"working-directory"`
}

// oneStep returns the job's one step that satisfies ok.
func (w *workflow) oneStep(t *testing.T, job, what string, ok func(step) bool) step {
	t.Helper()
	var found []step
	for _, s := range w.Jobs[job].Steps {
		if ok(s) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s job %s has %d steps that %s, want 1", shardsWorkflow, job, len(found), what)
	}
	return found[0]
}

func uses(action string) func(step) bool {
	return func(s step) bool { return strings.HasPrefix(s.Uses, action+"@") }
}

func runs(command string) func(step) bool {
	return func(s step) bool { return strings.Contains(s.Run, command) }
}

func readShardsWorkflow(t *testing.T) *workflow {
	t.Helper()
	data, err := os.ReadFile(shardsWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(data, &w); err != nil {
		t.Fatalf("%s is not valid YAML: %v", shardsWorkflow, err)
	}
	return &w
}

var expression = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// eval fills a workflow value's ${{ … }} expressions from ctx, the values
// GitHub would give them; an expression ctx lacks fails the test.
func eval(t *testing.T, value string, ctx map[string]string) string {
	t.Helper()
	return expression.ReplaceAllStringFunc(value, func(m string) string {
		name := expression.FindStringSubmatch(m)[1]
		v, ok := ctx[name]
		if !ok {
			t.Fatalf("%s: the test cannot evaluate ${{ %s }}", shardsWorkflow, name)
		}
		return v
	})
}

// TestShardsWorkflowShape checks the shard matrix against SHARDS, the merge
// job's dependency, and that both jobs install batch with the step
// TestPipelinesInstallBatch runs.
func TestShardsWorkflowShape(t *testing.T) {
	w := readShardsWorkflow(t)
	n, err := strconv.Atoi(w.Env["SHARDS"])
	if err != nil || n < 2 {
		t.Fatalf("%s env SHARDS = %q, want a number of shards from 2", shardsWorkflow, w.Env["SHARDS"])
	}
	shard := w.Jobs["shard"]
	want := make([]int, n)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(shard.Strategy.Matrix.Shard, want) {
		t.Errorf("matrix.shard = %v, want %v (1..SHARDS)", shard.Strategy.Matrix.Shard, want)
	}
	if ff := shard.Strategy.FailFast; ff == nil || *ff {
		t.Error("the shard matrix is fail-fast: one failed shard would cancel the others mid-run")
	}
	merge := w.Jobs["merge"]
	var needs []string
	switch merge.Needs.Kind {
	case yaml.ScalarNode:
		needs = []string{merge.Needs.Value}
	case yaml.SequenceNode:
		if err := merge.Needs.Decode(&needs); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(needs, []string{"shard"}) {
		t.Errorf("merge needs %q, want the shard matrix (every shard job)", needs)
	}
	if !strings.Contains(merge.If, "!cancelled()") {
		t.Errorf("merge runs if %q; want it to run when a shard failed too (!cancelled())", merge.If)
	}
	tested, _ := installScript(t, "github-actions.yml")
	for _, job := range []string{"shard", "merge"} {
		s := w.oneStep(t, job, "install batch", runs("go install ./cmd/batch"))
		if s.Run != tested {
			t.Errorf("%s job %s installs batch unlike github-actions.yml, whose step the install test runs:\n%s", shardsWorkflow, job, s.Run)
		}
	}
	if w.Env["BATCH_REPO"] != "" {
		t.Errorf("%s sets BATCH_REPO to %q, want it empty (batch's own repository)", shardsWorkflow, w.Env["BATCH_REPO"])
	}
}

// recordingBatch writes a batch into a new folder that appends its
// arguments (NUL-separated, a line per call) to log and runs the real
// binary, `run` against its in-process sandbox. It returns the folder.
func recordingBatch(t *testing.T, real, log string) string {
	t.Helper()
	dir := t.TempDir()
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	script := fmt.Sprintf(`#!/bin/sh
{ printf '%%s\0' "$@"; echo; } >>%s
case $1 in
  run) exec %s "$@" --sandbox ;;
  *) exec %s "$@" ;;
esac
`, q(log), q(real), q(real))
	if err := os.WriteFile(filepath.Join(dir, "batch"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// calls reads a recording batch's log.
func calls(t *testing.T, log string) [][]string {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out [][]string
	for line := range strings.Lines(string(data)) {
		out = append(out, strings.Split(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\x00"), "\x00"))
	}
	return out
}

// runStep runs a step's script as GitHub's default shell does (bash -e) in
// dir with env, and returns the exit code and output.
func runStep(t *testing.T, s step, dir string, env []string) (int, string) {
	t.Helper()
	if strings.Contains(s.Run, "${{") {
		t.Fatalf("step %q puts an expression in its script; pass it through env", s.Name)
	}
	cmd := exec.CommandContext(t.Context(), "bash", "-e", "-c", s.Run)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("run step %q: %v", s.Name, err)
	}
	return 0, string(out)
}

// TestShardsWorkflowRuns runs each matrix entry's shard step against the
// sandbox in a workspace of its own, passes the folders its upload step
// names to the merge job as its download step would lay them out, runs the
// merge step, and checks the merged report has every job exactly once.
func TestShardsWorkflowRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs batch")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skipf("the workflow's steps need bash: %v", err)
	}
	if batchBinary == "" {
		t.Fatalf("cmd/batch does not build: %s", buildErr)
	}
	w := readShardsWorkflow(t)
	shards := w.Jobs["shard"].Strategy.Matrix.Shard
	manifestPath := w.On.WorkflowDispatch.Inputs["manifest"].Default
	if manifestPath == "" {
		t.Fatal("the workflow's manifest input has no default")
	}
	src, err := os.ReadFile(filepath.Join("../..", filepath.FromSlash(manifestPath)))
	if err != nil {
		t.Fatalf("the manifest input's default: %v", err)
	}
	checkout := func(t *testing.T) string { // a runner's fresh checkout
		ws := t.TempDir()
		p := filepath.Join(ws, filepath.FromSlash(manifestPath))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, src, 0o644); err != nil {
			t.Fatal(err)
		}
		return ws
	}
	log := filepath.Join(t.TempDir(), "calls")
	bin := recordingBatch(t, batchBinary, log)
	// ctxFor is what GitHub gives the expressions of a job: the run's
	// values, the job's own, then the workflow's env.
	ctxFor := func(job map[string]string) map[string]string {
		ctx := map[string]string{
			"inputs.manifest":           manifestPath,
			"strategy.job-total":        strconv.Itoa(len(shards)),
			"secrets.STABILITY_API_KEY": "sk-test-not-a-real-key",
			"github.token":              "ghs-test",
			"github.run_id":             "1",
		}
		maps.Copy(ctx, job)
		for _, k := range slices.Sorted(maps.Keys(w.Env)) {
			ctx["env."+k] = eval(t, w.Env[k], ctx)
		}
		return ctx
	}
	// env is a step's environment: the workflow's env, then the step's.
	env := func(ctx map[string]string, s step) []string {
		e := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		for _, k := range slices.Sorted(maps.Keys(w.Env)) {
			e = append(e, k+"="+ctx["env."+k])
		}
		for _, k := range slices.Sorted(maps.Keys(s.Env)) {
			e = append(e, k+"="+eval(t, s.Env[k], ctx))
		}
		return e
	}

	artifacts := t.TempDir() // what the upload steps stored, by artifact name
	var names []string
	for _, k := range shards {
		ctx := ctxFor(map[string]string{"matrix.shard": strconv.Itoa(k)})
		ws := checkout(t)
		run := w.oneStep(t, "shard", "run batch", runs("batch run"))
		if err := os.Truncate(log, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		code, out := runStep(t, run, ws, env(ctx, run))
		if code != 0 {
			t.Fatalf("shard %d: exit %d\n%s", k, code, out)
		}
		var runArgs []string
		plannedWhole := false
		for _, c := range calls(t, log) {
			_, sharded := shardtest.FlagValue(c, "shard")
			switch {
			case c[0] == "run":
				runArgs = c
			case c[0] == "plan" && !sharded:
				plannedWhole = true
			}
		}
		wantShard := fmt.Sprintf("%d/%d", k, len(shards))
		if got, _ := shardtest.FlagValue(runArgs, "shard"); got != wantShard {
			t.Errorf("matrix shard %d runs --shard %q, want %q", k, got, wantShard)
		}
		// batch divides --rate by N under --shard K/N: the whole rate in
		// gives each shard its 1/N.
		if got, _ := shardtest.FlagValue(runArgs, "rate"); got != w.Env["RATE"] {
			t.Errorf("matrix shard %d runs --rate %q, want the account's whole rate %q", k, got, w.Env["RATE"])
		}
		if !plannedWhole {
			t.Errorf("matrix shard %d does not check the whole manifest's budget with batch plan first", k)
		}

		upload := w.oneStep(t, "shard", "upload an artifact", uses("actions/upload-artifact"))
		name, dir := eval(t, upload.With["name"], ctx), path.Clean(eval(t, upload.With["path"], ctx))
		if upload.If != "always()" {
			t.Errorf("the shard's upload runs if %q, want always(): a failed shard's folder is what its re-run resumes from", upload.If)
		}
		if want := fmt.Sprintf("out/shard-%d-of-%d", k, len(shards)); dir != want || path.Base(dir) != name {
			t.Errorf("matrix shard %d uploads %s as %s, want %s as its base name", k, dir, name, want)
		}
		if _, err := os.Stat(filepath.Join(ws, filepath.FromSlash(dir), report.RunFile)); err != nil {
			t.Errorf("matrix shard %d uploads %s, which holds no report: %v", k, dir, err)
		}
		restore := w.oneStep(t, "shard", "download an artifact", uses("actions/download-artifact"))
		if eval(t, restore.With["name"], ctx) != name || path.Clean(eval(t, restore.With["path"], ctx)) != dir {
			t.Errorf("matrix shard %d restores %s into %s on a re-run, want what it uploads, %s into %s",
				k, restore.With["name"], restore.With["path"], name, dir)
		}
		if err := os.CopyFS(filepath.Join(artifacts, name), os.DirFS(filepath.Join(ws, filepath.FromSlash(dir)))); err != nil {
			t.Fatalf("upload %s as %s: %v", dir, name, err)
		}
		names = append(names, name)
	}

	// The merge job, on a runner of its own: download-artifact with a
	// pattern puts each artifact in PATH/NAME.
	mergeCtx := ctxFor(nil)
	merge := w.oneStep(t, "merge", "merge the reports", runs("batch report"))
	mergeEnv := func(ws string) []string {
		return append(env(mergeCtx, merge), "GITHUB_STEP_SUMMARY="+filepath.Join(ws, "summary.md"))
	}
	download := w.oneStep(t, "merge", "download artifacts", uses("actions/download-artifact"))
	lay := func(t *testing.T, names []string) string {
		ws := checkout(t)
		pattern, into := eval(t, download.With["pattern"], mergeCtx), eval(t, download.With["path"], mergeCtx)
		for _, name := range names {
			if ok, _ := path.Match(pattern, name); !ok {
				t.Fatalf("the merge downloads %q, which does not match artifact %s", pattern, name)
			}
			if err := os.CopyFS(filepath.Join(ws, filepath.FromSlash(into), name), os.DirFS(filepath.Join(artifacts, name))); err != nil {
				t.Fatal(err)
			}
		}
		return ws
	}
	ws := lay(t, names)
	workdir := filepath.Join(ws, filepath.FromSlash(merge.WorkingDirectory))
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	code, out := runStep(t, merge, workdir, mergeEnv(ws))
	if code != 0 {
		t.Fatalf("merge step: exit %d\n%s", code, out)
	}
	if !slices.ContainsFunc(calls(t, log), func(c []string) bool {
		return len(c) > len(names) && c[0] == "report" && slices.Equal(c[len(c)-len(names):], names)
	}) {
		t.Errorf("the merge step never called batch report with every shard's folder: %q", calls(t, log))
	}
	merged, err := report.ReadRun(workdir)
	if err != nil {
		t.Fatalf("merged report: %v\n%s", err, out)
	}
	wholeJobs := shardtest.PlanJobs(t, batchBinary, filepath.Join(ws, filepath.FromSlash(manifestPath)))
	shardtest.CheckMerged(t, merged, wholeJobs)
	if merged.Totals.Succeeded != len(wholeJobs) || merged.Shard != "" {
		t.Errorf("merged report: %d succeeded, shard %q; want the whole manifest's %d, no shard", merged.Totals.Succeeded, merged.Shard, len(wholeJobs))
	}
	upload := w.oneStep(t, "merge", "upload an artifact", uses("actions/upload-artifact"))
	for line := range strings.Lines(upload.With["path"]) {
		if p := strings.TrimSpace(line); p != "" {
			if fi, err := os.Stat(filepath.Join(ws, filepath.FromSlash(p))); err != nil || fi.Size() == 0 {
				t.Errorf("the merge uploads %s, which the merge step did not write: %v", p, err)
			}
		}
	}
	if fi, err := os.Stat(filepath.Join(ws, "summary.md")); err != nil || fi.Size() == 0 {
		t.Errorf("the merge step wrote no job summary: %v", err)
	}

	// A shard whose artifact is missing: the merge fails rather than
	// reporting the others as the whole run.
	ws = lay(t, slices.Delete(slices.Clone(names), 1, 2))
	if code, out := runStep(t, merge, filepath.Join(ws, filepath.FromSlash(merge.WorkingDirectory)), mergeEnv(ws)); code == 0 {
		t.Errorf("merge step without %s: exit 0, want a failure\n%s", names[1], out)
	}
}
