package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/golden"
	"github.com/batch-tool/batch/internal/imagefile"
	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/sandbox"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// result is what one in-process command line did.
type result struct {
	code           int
	stdout, stderr string
}

// batchCmd runs the command line in-process with the given environment.
func batchCmd(t *testing.T, environ map[string]string, args ...string) result {
	t.Helper()
	return batchCmdCtx(t.Context(), t, environ, args...)
}

func batchCmdCtx(ctx context.Context, t *testing.T, environ map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	for _, k := range []string{rateDirEnv, "XDG_CACHE_HOME", "HOME", "LocalAppData"} {
		if _, ok := environ[k]; !ok { // never the user's own cache folder
			environ = maps.Clone(environ)
			if environ == nil {
				environ = map[string]string{}
			}
			environ[k] = t.TempDir()
		}
	}
	e := &env{
		getenv: func(k string) string { return environ[k] },
		stdout: &stdout, stderr: &stderr,
		now: func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) },
	}
	code := e.main(ctx, args)
	return result{code, stdout.String(), stderr.String()}
}

func checkGolden(t *testing.T, name string, got string) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name+".golden"), []byte(got), *update)
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanGolden(t *testing.T) {
	for _, format := range []string{"table", "json", "markdown", "csv"} {
		t.Run(format, func(t *testing.T) {
			r := batchCmd(t, nil, "plan", "--format", format, "../../examples/quickstart.yaml")
			if r.code != exitOK {
				t.Fatalf("plan exit %d, stderr:\n%s", r.code, r.stderr)
			}
			checkGolden(t, "plan-quickstart."+format, r.stdout)
		})
	}
}

func TestPlanEveryExample(t *testing.T) {
	paths, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(paths) < 4 {
		t.Fatalf("examples: %v %v", paths, err)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			r := batchCmd(t, nil, "plan", "--format", "json", p)
			if r.code != exitOK {
				t.Fatalf("plan %s: exit %d\n%s", p, r.code, r.stderr)
			}
			var plan planDoc
			if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil {
				t.Fatal(err)
			}
			if len(plan.Jobs) == 0 || plan.TotalCredits <= 0 {
				t.Errorf("plan %s: %d jobs, total %v", p, len(plan.Jobs), plan.TotalCredits)
			}
			var sum cost.Credits
			for _, j := range plan.Jobs {
				sum += j.Credits
			}
			if sum != plan.TotalCredits {
				t.Errorf("plan %s: jobs sum to %v, total says %v", p, sum, plan.TotalCredits)
			}
		})
	}
}

func TestPlanExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "version: 1\nengine: stable-diffusion-v1-5\npricing: dreamstudio-2022\njobs:\n  - prompt: a cat\n    width: 512\n    height: 512\n    steps: 50\n    samples: 3\n")
	bad := writeFile(t, dir, "bad.yaml", "version: 1\nengine: stable-diffusion-v1-5\njobs:\n  - prompt: a cat\n    promt: typo\n    steps: 5\n")
	prices := writeFile(t, dir, "prices.yaml", "rules:\n  - engines: [stable-diffusion-v1-5]\n    kind: flat\n    credits: 0.25\n")
	badPrices := writeFile(t, dir, "bad-prices.yaml", "rules:\n  - engines: [stable-diffusion-v1-5]\n    kind: flatt\n")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"ok", []string{"plan", good}, exitOK, "3.0", ""},
		{"price overrides", []string{"plan", "--prices", prices, good}, exitOK, "0.75", ""},
		{"bad price file", []string{"plan", "--prices", badPrices, good}, exitUsage, "", "bad-prices.yaml:3:11"},
		{"at budget", []string{"plan", "--budget", "3", good}, exitOK, "3.0", ""},
		{"over budget", []string{"plan", "--budget", "2.9", good}, exitOverBudget, "", "exceeds budget"},
		{"flags after the manifest", []string{"plan", good, "--budget", "2.9"}, exitOverBudget, "", "exceeds budget"},
		{"double dash", []string{"plan", "--", good}, exitOK, "3.0", ""},
		{"invalid manifest", []string{"plan", bad}, exitUsage, "", "bad.yaml:5:5"},
		{"every problem", []string{"plan", bad}, exitUsage, "", "bad.yaml:6:12"},
		{"missing file", []string{"plan", filepath.Join(dir, "nope.yaml")}, exitUsage, "", "nope.yaml: no such file"},
		{"unknown sheet", []string{"plan", "--pricing", "nope", good}, exitUsage, "", "nope"},
		{"unpriceable", []string{"plan", "--pricing", "sdxl-2024", good}, exitUsage, "", "good.yaml:5:5: job \"a-cat\": stable-diffusion-v1-5 was retired 2023-11-15; price it with --pricing v1-2023"},
		{"no args", []string{"plan"}, exitUsage, "", "missing argument"},
		{"bad flag", []string{"plan", "--bogus", good}, exitUsage, "", "bogus"},
		{"bad shard", []string{"plan", "--shard", "3/2", good}, exitUsage, "", "K/N"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", "unknown command"},
		{"help", []string{"plan", "-h"}, exitOK, "", "usage: batch plan"},
		{"version", []string{"version"}, exitOK, "batch ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := batchCmd(t, nil, tt.args...)
			if r.code != tt.code {
				t.Errorf("batch %v: exit %d, want %d\nstderr: %s", tt.args, r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.stdout) {
				t.Errorf("batch %v: stdout %q does not contain %q", tt.args, r.stdout, tt.stdout)
			}
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("batch %v: stderr %q does not contain %q", tt.args, r.stderr, tt.stderr)
			}
		})
	}
}

func TestPlanShardsCoverEveryJobOnce(t *testing.T) {
	var all planDoc
	r := batchCmd(t, nil, "plan", "--format", "json", "../../examples/style-matrix.yaml")
	if err := json.Unmarshal([]byte(r.stdout), &all); err != nil {
		t.Fatal(err, r.stderr)
	}
	seen := map[string]int{}
	var sum cost.Credits
	for k := 1; k <= 3; k++ {
		var p planDoc
		r := batchCmd(t, nil, "plan", "--format", "json", "--shard", strconv.Itoa(k)+"/3", "../../examples/style-matrix.yaml")
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
			t.Fatal(err, r.stderr)
		}
		for _, j := range p.Jobs {
			seen[j.ID]++
		}
		sum += p.TotalCredits
	}
	if len(seen) != len(all.Jobs) || sum != all.TotalCredits {
		t.Errorf("3 shards cover %d jobs costing %v; whole plan has %d costing %v", len(seen), sum, len(all.Jobs), all.TotalCredits)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %s is in %d shards", id, n)
		}
	}
}

func TestSchemaAndPrices(t *testing.T) {
	r := batchCmd(t, nil, "schema")
	var schema map[string]any
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &schema) != nil {
		t.Fatalf("schema: exit %d, output is not JSON: %.200s", r.code, r.stdout)
	}
	r = batchCmd(t, nil, "prices")
	for _, id := range []string{"dreamstudio-2022", "v1-2023", "sdxl-2024"} {
		if !strings.Contains(r.stdout, id) {
			t.Errorf("prices does not list %s:\n%s", id, r.stdout)
		}
	}
	r = batchCmd(t, nil, "prices", "--pricing", "v1-2023")
	if r.code != exitOK || !strings.Contains(r.stdout, "169527") {
		t.Errorf("prices --pricing v1-2023: exit %d\n%s", r.code, r.stdout)
	}
}

func TestRunSandboxEndToEndAndResume(t *testing.T) {
	out := t.TempDir()
	r := batchCmd(t, nil, "run", "--sandbox", "--out", out, "--format", "json", "../../examples/quickstart.yaml")
	if r.code != exitOK {
		t.Fatalf("run --sandbox: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	rep, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Succeeded != rep.Totals.Jobs || rep.Totals.Jobs == 0 {
		t.Fatalf("totals %+v", rep.Totals)
	}
	if rep.ChargedCredits != rep.EstimatedCredits {
		t.Errorf("charged %v, estimated %v", rep.ChargedCredits, rep.EstimatedCredits)
	}
	if rep.BalanceBefore == nil || *rep.BalanceBefore != sandbox.DefaultBalance {
		t.Errorf("balance at start %v, want the sandbox's %v", rep.BalanceBefore, sandbox.DefaultBalance)
	}
	if rep.PossiblyBilledCredits != 0 {
		t.Errorf("possibly billed %v, want 0 against a sandbox that never drops", rep.PossiblyBilledCredits)
	}
	for _, j := range rep.Jobs {
		if len(j.Images) != j.Samples {
			t.Errorf("job %s: %d images, want %d", j.ID, len(j.Images), j.Samples)
		}
		for _, im := range j.Images {
			if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(im.Path))); err != nil {
				t.Error(err)
			}
		}
	}
	for _, f := range []string{"report.md", "report.html", "journal.jsonl"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	// A rerun sends nothing: every job comes from the journal.
	r = batchCmd(t, nil, "run", "--sandbox", "--out", out, "../../examples/quickstart.yaml")
	if r.code != exitOK {
		t.Fatalf("rerun: exit %d\n%s", r.code, r.stderr)
	}
	rep2, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range rep2.Jobs {
		if !j.Resumed || j.Attempts != 1 {
			t.Errorf("rerun: job %s resumed %v after %d attempts, want resumed from the journal after 1", j.ID, j.Resumed, j.Attempts)
		}
	}
}

// startSandboxServer serves a sandbox on loopback for a test.
func startSandboxServer(t *testing.T, cfg sandbox.Config) string {
	t.Helper()
	srv, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return startSandboxWith(t, srv)
}

// startSandboxWith serves srv on loopback for a test and returns its URL.
func startSandboxWith(t testing.TB, srv *sandbox.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

func TestRunRefusals(t *testing.T) {
	sheet, err := cost.LookupSheet(cost.DefaultSheet)
	if err != nil {
		t.Fatal(err)
	}
	poor := startSandboxServer(t, sandbox.Config{Pricer: sheet, Balance: cost.Credit})
	keyed := startSandboxServer(t, sandbox.Config{Pricer: sheet, Key: "right"})
	qs := "../../examples/quickstart.yaml"
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"over budget", nil, []string{"run", "--sandbox", "--budget", "0.5", "--out", t.TempDir(), qs}, exitOverBudget, "exceeds budget"},
		{"no key", nil, []string{"run", "--out", t.TempDir(), qs}, exitUsage, "STABILITY_API_KEY"},
		{"low balance", map[string]string{"STABILITY_API_KEY": "sk-secret-456"}, []string{"run", "--api-url", poor, "--out", t.TempDir(), qs}, exitLowBalance, "balance"},
		{"bad key", map[string]string{"STABILITY_API_KEY": "wrong-secret-key"}, []string{"run", "--api-url", keyed, "--out", t.TempDir(), qs}, exitFailed, "401"},
		{"plain http", map[string]string{"STABILITY_API_KEY": "sk-secret-123"}, []string{"run", "--api-url", "http://example.com", "--out", t.TempDir(), qs}, exitUsage, "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := batchCmd(t, tt.env, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d (want %d), stderr:\n%s\n(want it to contain %q)", r.code, tt.code, r.stderr, tt.stderr)
			}
			if k := tt.env["STABILITY_API_KEY"]; k != "" && (strings.Contains(r.stderr, k) || strings.Contains(r.stdout, k)) {
				t.Errorf("the API key appears in the output")
			}
		})
	}
}

func TestSandboxCommandServesRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	addrc := make(chan string, 1)
	done := make(chan result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		e := &env{getenv: func(string) string { return "" }, stdout: &stdout, stderr: &stderr, now: time.Now,
			ready: func(a string) { addrc <- a }}
		code := e.main(ctx, []string{"sandbox", "--addr", "127.0.0.1:0"})
		done <- result{code, stdout.String(), stderr.String()}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case r := <-done:
		t.Fatalf("sandbox exited %d: %s", r.code, r.stderr)
	}
	r := batchCmd(t, map[string]string{"STABILITY_API_KEY": "k"}, "run", "--api-url", "http://"+addr, "--out", t.TempDir(), "../../examples/quickstart.yaml")
	if r.code != exitOK {
		t.Errorf("run against batch sandbox: exit %d\n%s", r.code, r.stderr)
	}
	cancel()
	if r := <-done; r.code != exitOK {
		t.Errorf("sandbox exit %d after cancel: %s", r.code, r.stderr)
	}
}

func TestDiff(t *testing.T) {
	dir := t.TempDir()
	base := writeFile(t, dir, "base.yaml", "version: 1\nengine: stable-diffusion-v1-5\npricing: dreamstudio-2022\ndefaults: {width: 512, height: 512, steps: 50}\njobs:\n  - id: a\n    prompt: a cat\n  - id: b\n    prompt: a dog\n")
	head := writeFile(t, dir, "head.yaml", "version: 1\nengine: stable-diffusion-v1-5\npricing: dreamstudio-2022\ndefaults: {width: 512, height: 512, steps: 50}\njobs:\n  - id: a\n    prompt: a cat\n    samples: 2\n  - id: c\n    prompt: a cow\n")
	r := batchCmd(t, nil, "diff", "--format", "json", base, head)
	if r.code != exitOK {
		t.Fatalf("diff: exit %d: %s", r.code, r.stderr)
	}
	var d struct {
		Base  cost.Credits `json:"base_total_credits"`
		Head  cost.Credits `json:"head_total_credits"`
		Delta cost.Credits `json:"total_delta_credits"`
		Jobs  []struct {
			ID     string       `json:"id"`
			Change string       `json:"change"`
			Delta  cost.Credits `json:"delta_credits"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatal(err)
	}
	if d.Base != 2*cost.Credit || d.Head != 3*cost.Credit || d.Delta != cost.Credit {
		t.Errorf("diff totals %v → %v (Δ %v), want 2.0 → 3.0 (Δ 1.0)", d.Base, d.Head, d.Delta)
	}
	changes := map[string]string{}
	for _, j := range d.Jobs {
		changes[j.ID] = j.Change
	}
	if changes["a"] != "changed" || changes["b"] != "removed" || changes["c"] != "added" {
		t.Errorf("changes %v", changes)
	}
	if r := batchCmd(t, nil, "diff", "--fail-increase", "40", base, head); r.code != exitOverBudget {
		t.Errorf("diff --fail-increase 40 on a 50%% increase: exit %d", r.code)
	}
	if r := batchCmd(t, nil, "diff", "--fail-increase", "50", base, head); r.code != exitOK {
		t.Errorf("diff --fail-increase 50 on a 50%% increase: exit %d", r.code)
	}
	if r := batchCmd(t, nil, "diff", "--fail-increase", "0", base, base); r.code != exitOK {
		t.Errorf("diff --fail-increase 0 with no increase: exit %d", r.code)
	}
	if r := batchCmd(t, nil, "diff", "--fail-above", "1", base, head); r.code != exitOK {
		t.Errorf("diff --fail-above 1 on an increase of exactly 1: exit %d", r.code)
	}
	if r := batchCmd(t, nil, "diff", "--format", "markdown", base, base); r.code != exitOK || !strings.Contains(strings.ToLower(r.stdout), "no cost change") {
		t.Errorf("diff of a manifest with itself: exit %d, %q", r.code, r.stdout)
	}
}

// TestStepSummary: plan appends its Markdown to the file
// GITHUB_STEP_SUMMARY names, after what earlier steps wrote there.
func TestStepSummary(t *testing.T) {
	summary := writeFile(t, t.TempDir(), "summary.md", "## An earlier step\n\n")
	r := batchCmd(t, map[string]string{"GITHUB_STEP_SUMMARY": summary}, "plan", "../../examples/quickstart.yaml")
	if r.code != exitOK {
		t.Fatal(r.stderr)
	}
	b, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "step-summary-plan-quickstart.md", string(b))
}

// TestShardRunsMergeIntoOneReport runs both shards with the same --out:
// each gets a folder (and journal) of its own inside it, and the report of
// the two folders is the whole manifest's.
func TestShardRunsMergeIntoOneReport(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	m := "../../examples/quickstart.yaml"
	var outs []string
	for _, s := range []string{"1/2", "2/2"} {
		r := batchCmd(t, nil, "run", "--sandbox", "--shard", s, "--out", out, m)
		if r.code != exitOK {
			t.Fatalf("run --shard %s: exit %d\n%s", s, r.code, r.stderr)
		}
		shardOut := filepath.Join(out, "shard-"+strings.ReplaceAll(s, "/", "-of-"))
		if !strings.Contains(r.stderr, "batch: report in "+filepath.Join(shardOut, report.RunFile)) {
			t.Errorf("run --shard %s --out %s did not report in %s:\n%s", s, out, shardOut, r.stderr)
		}
		outs = append(outs, shardOut)
	}
	if _, err := os.Stat(filepath.Join(out, "journal.jsonl")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a journal in %s, which the shards share (stat: %v)", out, err)
	}
	r := batchCmd(t, nil, append([]string{"report", "--format", "json"}, outs...)...)
	if r.code != exitOK {
		t.Fatalf("report of both shards: exit %d\n%s", r.code, r.stderr)
	}
	var merged report.Run
	if err := json.Unmarshal([]byte(r.stdout), &merged); err != nil {
		t.Fatal(err)
	}
	var plan planDoc
	if err := json.Unmarshal([]byte(batchCmd(t, nil, "plan", "--format", "json", m).stdout), &plan); err != nil {
		t.Fatal(err)
	}
	if merged.Totals.Jobs != len(plan.Jobs) || merged.Totals.Succeeded != len(plan.Jobs) || merged.ChargedCredits != plan.TotalCredits {
		t.Errorf("merged report: totals %+v, charged %v; plan has %d jobs costing %v", merged.Totals, merged.ChargedCredits, len(plan.Jobs), plan.TotalCredits)
	}
	for i, j := range merged.Jobs {
		if j.ID != plan.Jobs[i].ID {
			t.Errorf("merged job %d is %s, plan order has %s", i, j.ID, plan.Jobs[i].ID)
		}
	}
}

// TestRunRecoversFromRateLimit runs faster than a sandbox allows: the
// sandbox answers 429 and locks the key out, every worker pauses for its
// Retry-After, and every job still succeeds, paid once.
func TestRunRecoversFromRateLimit(t *testing.T) {
	sheet, err := cost.LookupSheet(cost.DefaultSheet)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Config{Pricer: sheet, RateLimit: 5, RateWindow: time.Second, Lockout: time.Second, RetryAfter: true})
	if err != nil {
		t.Fatal(err)
	}
	url := startSandboxWith(t, sb)
	out := t.TempDir()
	r := batchCmd(t, map[string]string{"STABILITY_API_KEY": "sk-test"}, "run", "--api-url", url, "--rate", "50/1s", "--out", out, "../../examples/quickstart.yaml")
	if r.code != exitOK {
		t.Fatalf("run: exit %d\n%s", r.code, r.stderr)
	}
	st := sb.Stats()
	if st.RateLimited == 0 {
		t.Errorf("the sandbox never answered 429 (stats %+v): the test did not exercise the pause", st)
	}
	rep, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	// quickstart.yaml: two Core jobs at 3 credits, four SD 3.5 Flash at 2.5.
	if rep.Totals.Succeeded != 6 || st.Images != 6 || rep.ChargedCredits != 16*cost.Credit || st.Charged != 16*cost.Credit {
		t.Errorf("succeeded %d, images generated %d, charged %v (sandbox: %v); want 6, 6, 16.0", rep.Totals.Succeeded, st.Images, rep.ChargedCredits, st.Charged)
	}
}

// TestPipelineExample runs examples/pipeline.yaml on the in-process
// sandbox: every job succeeds, each image has the size its service makes
// from its source, the async job carries its generation id, and a rerun
// sends nothing.
func TestPipelineExample(t *testing.T) {
	out := t.TempDir()
	r := batchCmd(t, nil, "run", "--sandbox", "--out", out, "../../examples/pipeline.yaml")
	if r.code != exitOK {
		t.Fatalf("run --sandbox: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	rep, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Succeeded != 5 || rep.ChargedCredits != rep.EstimatedCredits || rep.EstimatedCredits != 74500*cost.Credit/1000 {
		t.Fatalf("totals %+v, charged %v, estimated %v; want 5 succeeded, 74.5 charged", rep.Totals, rep.ChargedCredits, rep.EstimatedCredits)
	}
	want := map[string]struct {
		deps  string
		w, h  int
		async bool
	}{
		"teapot":           {"", 1024, 1024, false},
		"teapot-cutout":    {"teapot", 1024, 1024, false},
		"teapot-cutout-4x": {"teapot-cutout", 4096, 4096, false},
		"teapot-big":       {"teapot", 3152, 3152, true},
		"shelf-teal":       {"", 768, 512, false},
	}
	for _, j := range rep.Jobs {
		w, ok := want[j.ID]
		if !ok {
			t.Errorf("unexpected job %s", j.ID)
			continue
		}
		if got := strings.Join(j.DependsOn, ","); got != w.deps {
			t.Errorf("%s: depends_on %q, want %q", j.ID, got, w.deps)
		}
		if (j.GenerationID != "") != w.async {
			t.Errorf("%s: generation id %q, want one: %v", j.ID, j.GenerationID, w.async)
		}
		if len(j.Images) != 1 {
			t.Fatalf("%s: %d images", j.ID, len(j.Images))
		}
		info, _, err := imagefile.Stat(filepath.Join(out, filepath.FromSlash(j.Images[0].Path)))
		if err != nil || info.Width != w.w || info.Height != w.h {
			t.Errorf("%s: image %+v, %v; want %dx%d", j.ID, info, err, w.w, w.h)
		}
	}
	r = batchCmd(t, nil, "run", "--sandbox", "--out", out, "../../examples/pipeline.yaml")
	if r.code != exitOK {
		t.Fatalf("rerun: exit %d\n%s", r.code, r.stderr)
	}
	rep, err = report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range rep.Jobs {
		if !j.Resumed {
			t.Errorf("rerun: %s was sent again", j.ID)
		}
	}
}
