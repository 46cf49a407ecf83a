package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/sandbox"
)

// countedSandbox serves a sandbox on loopback behind a handler that counts
// every request, balance checks included, and calls hook (when set) with
// the count before each is served.
type countedSandbox struct {
	url  string
	sb   *sandbox.Server
	n    atomic.Int64
	hook atomic.Pointer[func(n int64)]
	key  map[string]string
}

func startCounted(t *testing.T, cfg sandbox.Config) *countedSandbox {
	t.Helper()
	sheet, err := cost.LookupSheet(cost.DefaultSheet)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Pricer = sheet
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &countedSandbox{sb: sb, key: map[string]string{"STABILITY_API_KEY": "sk-replace-test"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := c.n.Add(1)
		if h := c.hook.Load(); h != nil {
			(*h)(n)
		}
		sb.ServeHTTP(w, r)
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	c.url = "http://" + ln.Addr().String()
	return c
}

// run runs batch run against the sandbox.
func (c *countedSandbox) run(t *testing.T, args ...string) result {
	t.Helper()
	return batchCmd(t, c.key, append([]string{"run", "--api-url", c.url}, args...)...)
}

// tree returns the files under dir, slash-separated and relative to it,
// with their SHA-256; the lock file and report files are left out.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if !strings.Contains(rel, "/") {
			return nil // journal, report, lock
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// inImages keeps the entries of files under images/ and filtered/.
func inImages(files map[string]string) map[string]string {
	out := map[string]string{}
	for p, s := range files {
		if strings.HasPrefix(p, "images/") || strings.HasPrefix(p, "filtered/") {
			out[p] = s
		}
	}
	return out
}

// reportImages returns the report's image paths, and its job ids in order.
func reportImages(t *testing.T, out string) (map[string]string, []string) {
	t.Helper()
	rep, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]string{}
	var ids []string
	for _, j := range rep.Jobs {
		ids = append(ids, j.ID)
		for _, im := range j.Images {
			images[im.Path] = im.SHA256
		}
	}
	return images, ids
}

// replaceManifest is a manifest of seven jobs: Stable Image Core as PNG,
// JPEG and WebP, one content filtered, a v1 SDXL job with two samples, one
// kept and one removed by the edit below.
const replaceManifest = `version: 1
name: first
service: generate/core
jobs:
  - id: png
    prompt: a lighthouse
    seed: 1
  - id: jpg
    prompt: a fox
    output_format: jpeg
    seed: 2
  - id: webp
    prompt: a robot
    output_format: webp
    seed: 3
  - id: flt
    prompt: a forbidden door
    seed: 4
  - id: multi
    engine: stable-diffusion-xl-1024-v1-0
    prompt: two cats
    width: 1024
    height: 1024
    steps: 30
    samples: 2
    seed: 5
  - id: keep
    prompt: a kept cat
    seed: 6
  - id: gone
    prompt: a removed cat
    seed: 7
`

// editedManifest changes five jobs' prompts, keeps one, drops one (gone)
// and adds one (new).
func editedManifest() string {
	m := replaceManifest
	for _, r := range [][2]string{{"a lighthouse", "a lighthouse at night"}, {"a fox", "a fox cub"}, {"a robot", "a tall robot"},
		{"a forbidden door", "an open door"}, {"two cats", "two dogs"}} {
		m = strings.Replace(m, "prompt: "+r[0]+"\n", "prompt: "+r[1]+"\n", 1)
	}
	i := strings.Index(m, "  - id: gone")
	return m[:i] + "  - id: new\n    prompt: a new cat\n    seed: 8\n"
}

// TestRunReplace: a rerun whose manifest changed five jobs and dropped one
// is refused before anything is sent, naming them; --replace moves their
// files (PNG, JPEG, WebP and its record, a filtered image, two samples)
// under OUT/replaced/ with their paths and runs only the changed and new
// jobs; the report and images/ then match the new manifest; the budget
// still counts what the replaced jobs cost.
func TestRunReplace(t *testing.T) {
	srv := startCounted(t, sandbox.Config{FilterWords: []string{"forbidden"}})
	dir := t.TempDir()
	m := writeFile(t, dir, "m.yaml", replaceManifest)
	out := filepath.Join(dir, "out")
	if r := srv.run(t, "--out", out, m); r.code != exitFailed || !strings.Contains(r.stderr, "1 filtered") {
		t.Fatalf("first run: exit %d (want 1: one job filtered)\n%s", r.code, r.stderr)
	}
	before := tree(t, out)
	old := []string{"images/png.png", "images/jpg.jpg", "images/webp.webp", "images/webp.webp.batch.json", "filtered/flt.png",
		"images/multi-1.png", "images/multi-2.png", "images/gone.png"}
	for _, p := range append(slices.Clone(old), "images/keep.png") {
		if before[p] == "" {
			t.Fatalf("the first run wrote no %s: %v", p, slices.Sorted(maps.Keys(before)))
		}
	}

	writeFile(t, dir, "m.yaml", editedManifest())
	sent := srv.n.Load()
	r := srv.run(t, "--out", out, m)
	want := out + " holds 5 job(s) whose request changed since they ran (png, jpg, webp, flt, multi) and 1 job(s) not in this manifest (gone); " +
		"nothing was sent: rerun with --replace to move their files to " + filepath.Join(out, "replaced") + string(filepath.Separator) + " and go on, or with another --out"
	if r.code != exitUsage || r.stderr != "batch: "+want+"\n" {
		t.Errorf("rerun without --replace: exit %d, stderr:\n%s\nwant exit 2 and:\nbatch: %s", r.code, r.stderr, want)
	}
	if n := srv.n.Load() - sent; n != 0 {
		t.Errorf("the refused run sent %d request(s)", n)
	}
	if after := tree(t, out); !maps.Equal(after, before) {
		t.Errorf("the refused run changed files:\nbefore %v\nafter  %v", before, after)
	}

	gens := srv.sb.Stats().Generations
	r = srv.run(t, "--replace", "--out", out, m)
	if r.code != exitOK {
		t.Fatalf("run --replace: exit %d\n%s", r.code, r.stderr)
	}
	moved := filepath.Join(out, "replaced", "20261125T120000Z")
	if line := fmt.Sprintf("batch: replaced 5 changed and 1 removed job(s): %d file(s) moved to %s\n", len(old), moved); !strings.Contains(r.stderr, line) {
		t.Errorf("run --replace stderr:\n%s\nwant the line %q", r.stderr, line)
	}
	if n := srv.sb.Stats().Generations - gens; n != 6 {
		t.Errorf("run --replace made %d generations, want 6 (five changed jobs and the new one)", n)
	}
	after := tree(t, out)
	for _, p := range old {
		if got := after["replaced/20261125T120000Z/"+p]; got != before[p] {
			t.Errorf("replaced/20261125T120000Z/%s: sha256 %q, want the first run's %q", p, got, before[p])
		}
	}
	if after["images/keep.png"] != before["images/keep.png"] {
		t.Errorf("images/keep.png changed")
	}
	listed, ids := reportImages(t, out)
	if want := []string{"png", "jpg", "webp", "flt", "multi", "keep", "new"}; !slices.Equal(ids, want) {
		t.Errorf("report jobs %q, want %q", ids, want)
	}
	onDisk := inImages(after)
	delete(onDisk, "images/webp.webp.batch.json")
	if !maps.Equal(onDisk, listed) {
		t.Errorf("images on disk %v, the report lists %v", onDisk, listed)
	}

	// The budget still counts the replaced jobs' charges: with one more
	// job changed, a budget 0.000001 short of the folder's charges plus
	// its price is refused before anything is sent.
	rep, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	st := srv.sb.Stats()
	if rep.ChargedCredits != st.Charged {
		t.Errorf("the report says %v charged, the sandbox charged %v", rep.ChargedCredits, st.Charged)
	}
	writeFile(t, dir, "m.yaml", strings.Replace(editedManifest(), "a kept cat", "a kept dog", 1))
	sent = srv.n.Load()
	budget := rep.ChargedCredits + 3*cost.Credit - 1 // Core: 3 credits
	r = srv.run(t, "--replace", "--budget", budget.String(), "--out", out, m)
	if r.code != exitOverBudget || srv.n.Load() != sent {
		t.Errorf("run over the budget across runs: exit %d after %d request(s), want 3 after none\n%s", r.code, srv.n.Load()-sent, r.stderr)
	}
	if r := srv.run(t, "--replace", "--budget", (budget + 1).String(), "--out", out, m); r.code != exitOK {
		t.Errorf("run at the budget: exit %d\n%s", r.code, r.stderr)
	}
}

// TestRunAnotherManifest: a manifest run into a folder that holds another
// manifest's run is refused, naming that manifest, also when its jobs are
// the same; --replace takes the folder over, keeping jobs with the same
// request, and the first manifest is then the other one.
func TestRunAnotherManifest(t *testing.T) {
	srv := startCounted(t, sandbox.Config{})
	dir := t.TempDir()
	body := "version: 1\nname: %s\nservice: generate/core\njobs:\n  - id: a\n    prompt: a cat\n    seed: 1\n  - id: b\n    prompt: a dog\n    seed: 2\n"
	first := writeFile(t, dir, "first.yaml", fmt.Sprintf(body, "first"))
	twin := writeFile(t, dir, "twin.yaml", fmt.Sprintf(body, "twin"))
	other := writeFile(t, dir, "other.yaml", "version: 1\nservice: generate/core\njobs:\n  - id: a\n    prompt: a cow\n    seed: 1\n")
	out := filepath.Join(dir, "out")
	if r := srv.run(t, "--out", out, first); r.code != exitOK {
		t.Fatalf("first run: exit %d\n%s", r.code, r.stderr)
	}
	abs, err := filepath.Abs(first)
	if err != nil {
		t.Fatal(err)
	}
	replaced := filepath.Join(out, "replaced") + string(filepath.Separator)
	tests := []struct {
		manifest string
		stderr   string
	}{
		{twin, fmt.Sprintf(`batch: %s holds a run of another manifest, %s ("first"); nothing was sent: rerun with --replace to run this manifest there (no file needs to move: its jobs with the same requests are kept), or with another --out`,
			out, abs)},
		{other, fmt.Sprintf(`batch: %s holds a run of another manifest, %s ("first"), with 1 job(s) whose request changed since they ran (a) and 1 job(s) not in this manifest (b); nothing was sent: rerun with --replace to move their files to %s and run this manifest there, or with another --out`,
			out, abs, replaced)},
	}
	for _, tt := range tests {
		sent := srv.n.Load()
		r := srv.run(t, "--out", out, tt.manifest)
		if r.code != exitUsage || r.stderr != tt.stderr+"\n" || srv.n.Load() != sent {
			t.Errorf("run %s: exit %d after %d request(s), stderr:\n%s\nwant exit 2 after none and:\n%s", filepath.Base(tt.manifest), r.code, srv.n.Load()-sent, r.stderr, tt.stderr)
		}
	}
	gens := srv.sb.Stats().Generations
	if r := srv.run(t, "--replace", "--out", out, twin); r.code != exitOK || strings.Contains(r.stderr, "replaced") {
		t.Fatalf("run twin --replace: exit %d\n%s", r.code, r.stderr)
	}
	if n := srv.sb.Stats().Generations - gens; n != 0 {
		t.Errorf("the twin sent %d generations; its jobs were done", n)
	}
	if r := srv.run(t, "--out", out, twin); r.code != exitOK {
		t.Errorf("rerun of the twin: exit %d\n%s", r.code, r.stderr)
	}
	if r := srv.run(t, "--out", out, first); r.code != exitUsage || !strings.Contains(r.stderr, `holds a run of another manifest, `) || !strings.Contains(r.stderr, `("twin")`) {
		t.Errorf("first manifest after the twin took over: exit %d\n%s", r.code, r.stderr)
	}
}

// TestRunReplaceShards: a job that moved to another shard is not removed;
// one gone from the manifest is, in the shard whose folder holds it.
func TestRunReplaceShards(t *testing.T) {
	dir := t.TempDir()
	entry := func(id string) string { return "  - id: " + id + "\n    prompt: a " + id + "\n    seed: 1\n" }
	head := "version: 1\nservice: generate/core\njobs:\n"
	m := writeFile(t, dir, "m.yaml", head+entry("a")+entry("b")+entry("c")+entry("d"))
	out := filepath.Join(dir, "out")
	for _, s := range []string{"1/2", "2/2"} {
		if r := batchCmd(t, nil, "run", "--sandbox", "--shard", s, "--out", out, m); r.code != exitOK {
			t.Fatalf("run --shard %s: exit %d\n%s", s, r.code, r.stderr)
		}
	}
	// z first: every job moves to the other shard
	writeFile(t, dir, "m.yaml", head+entry("z")+entry("a")+entry("b")+entry("c")+entry("d"))
	if r := batchCmd(t, nil, "run", "--sandbox", "--shard", "1/2", "--out", out, m); r.code != exitOK {
		t.Errorf("run --shard 1/2 after the jobs moved between shards: exit %d\n%s", r.code, r.stderr)
	}
	// c gone: shard 1 held it (a and c, the first run's 1/2)
	writeFile(t, dir, "m.yaml", head+entry("z")+entry("a")+entry("b")+entry("d"))
	r := batchCmd(t, nil, "run", "--sandbox", "--shard", "1/2", "--out", out, m)
	if want := "1 job(s) not in this manifest (c)"; r.code != exitUsage || !strings.Contains(r.stderr, want) {
		t.Errorf("run --shard 1/2 after c left: exit %d, want 2 and %q\n%s", r.code, want, r.stderr)
	}
}

// TestRunReplaceChaos edits a manifest at random between runs (prompts,
// output formats, samples changed; jobs removed and added) against a
// sandbox that drops and fails some requests, with some runs interrupted
// midway. After every run: a refused run sent nothing and changed no file;
// no image ever written is gone (each is in images/, filtered/ or under
// replaced/); images/ and filtered/ hold exactly the report's images; the
// report's jobs are the manifest's; and the sandbox charged no more than
// the folder counts as charged or possibly billed, which stays within the
// budget.
func TestRunReplaceChaos(t *testing.T) {
	srv := startCounted(t, sandbox.Config{FilterWords: []string{"forbidden"}, DropRate: 0.1, FailRate: 0.1, Seed: 7})
	rng := rand.New(rand.NewPCG(11, 11))
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	type job struct {
		id, prompt, format string
		samples            int
	}
	var jobs []job
	next := 0
	add := func() {
		next++
		formats := []string{"png", "jpeg", "webp", "v1"}
		j := job{id: fmt.Sprintf("j%02d", next), prompt: fmt.Sprintf("picture %d", next), format: formats[rng.IntN(len(formats))], samples: 1}
		if j.format == "v1" {
			j.samples = 1 + rng.IntN(2)
		}
		if rng.IntN(5) == 0 {
			j.prompt += " forbidden"
		}
		jobs = append(jobs, j)
	}
	for range 6 {
		add()
	}
	manifest := func() string {
		var b strings.Builder
		b.WriteString("version: 1\nservice: generate/core\njobs:\n")
		for _, j := range jobs {
			fmt.Fprintf(&b, "  - id: %s\n    prompt: %s\n    seed: 3\n", j.id, j.prompt)
			if j.format == "v1" {
				fmt.Fprintf(&b, "    engine: stable-diffusion-xl-1024-v1-0\n    width: 1024\n    height: 1024\n    steps: 30\n    samples: %d\n", j.samples)
			} else {
				fmt.Fprintf(&b, "    output_format: %s\n", j.format)
			}
		}
		return b.String()
	}
	const budget = 200 * cost.Credit
	seen := map[string]string{} // sha256 → where it was first seen
	m := filepath.Join(dir, "m.yaml")
	for round := range 8 {
		if round > 0 {
			for range 1 + rng.IntN(3) {
				switch k := rng.IntN(len(jobs)); rng.IntN(4) {
				case 0:
					jobs[k].prompt += " again"
				case 1:
					jobs = slices.Delete(jobs, k, k+1)
				case 2:
					add()
				default:
					if jobs[k].format == "v1" {
						jobs[k].samples = 3 - jobs[k].samples
					} else {
						jobs[k].format = map[string]string{"png": "webp", "webp": "jpeg", "jpeg": "png"}[jobs[k].format]
					}
				}
			}
		}
		writeFile(t, dir, "m.yaml", manifest())
		before := tree(t, out)
		sent := srv.n.Load()
		args := []string{"--budget", budget.String(), "--concurrency", "2", "--retry-unknown", "2", "--out", out, m}
		r := srv.run(t, args...)
		if r.code == exitUsage {
			if !strings.Contains(r.stderr, "nothing was sent: rerun with --replace") || srv.n.Load() != sent {
				t.Fatalf("round %d: refused after %d request(s):\n%s", round, srv.n.Load()-sent, r.stderr)
			}
			if after := tree(t, out); !maps.Equal(after, before) {
				t.Fatalf("round %d: the refused run changed files", round)
			}
			ctx, cancel := context.WithCancel(t.Context())
			if rng.IntN(3) == 0 { // interrupt this one midway
				stopAt := srv.n.Load() + 3
				hook := func(n int64) {
					if n >= stopAt {
						cancel()
					}
				}
				srv.hook.Store(&hook)
			}
			r = batchCmdCtx(ctx, t, srv.key, append([]string{"run", "--api-url", srv.url, "--replace"}, args...)...)
			srv.hook.Store(nil)
			cancel()
		}
		if r.code != exitOK && r.code != exitFailed && r.code != exitInterrupted {
			t.Fatalf("round %d: exit %d\n%s", round, r.code, r.stderr)
		}
		files := tree(t, out)
		have := map[string]bool{}
		for _, s := range files {
			have[s] = true
		}
		for s, where := range seen {
			if !have[s] {
				t.Errorf("round %d: the image first seen as %s is gone", round, where)
			}
		}
		for p, s := range inImages(files) {
			if _, ok := seen[s]; !ok && !strings.HasSuffix(p, ".batch.json") {
				seen[s] = fmt.Sprintf("%s (round %d)", p, round)
			}
		}
		listed, ids := reportImages(t, out)
		onDisk := inImages(files)
		for p := range onDisk {
			if strings.HasSuffix(p, ".batch.json") {
				delete(onDisk, p)
			}
		}
		if !maps.Equal(onDisk, listed) {
			t.Errorf("round %d: images on disk %v, the report lists %v", round, onDisk, listed)
		}
		var wantIDs []string
		for _, j := range jobs {
			wantIDs = append(wantIDs, j.id)
		}
		if !slices.Equal(ids, wantIDs) {
			t.Errorf("round %d: report jobs %q, manifest %q", round, ids, wantIDs)
		}
		rep, err := report.ReadRun(out)
		if err != nil {
			t.Fatal(err)
		}
		spent := rep.ChargedCredits + rep.PossiblyBilledCredits
		if st := srv.sb.Stats(); st.Charged > spent || spent > budget {
			t.Errorf("round %d: the sandbox charged %v; the folder counts %v charged + %v possibly billed, budget %v",
				round, st.Charged, rep.ChargedCredits, rep.PossiblyBilledCredits, budget)
		}
		if t.Failed() {
			t.Fatalf("round %d: manifest\n%s\nstderr:\n%s", round, manifest(), r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "replaced")); err != nil {
		t.Errorf("eight rounds of edits replaced nothing: %v", err)
	}
}

func TestIDList(t *testing.T) {
	ids := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("j%d", i+1))
		}
		return out
	}
	tests := []struct {
		n    int
		want string
	}{
		{1, "j1"},
		{10, "j1, j2, j3, j4, j5, j6, j7, j8, j9, j10"},
		{13, "j1, j2, j3, j4, j5, j6, j7, j8, j9, j10 and 3 more"},
	}
	for _, tt := range tests {
		if got := idList(ids(tt.n)); got != tt.want {
			t.Errorf("idList(%d ids) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
