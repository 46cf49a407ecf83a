// Package k8s_test renders the Kubernetes example for three shards and runs
// what its pods would run, with the real batch against its sandbox: no
// cluster needed.
package k8s_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/batch-tool/batch/examples/internal/shardtest"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/report"
)

// object is the part of a Kubernetes object the tests read.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		CompletionMode string `yaml:"completionMode"`
		Completions    *int   `yaml:"completions"`
		Parallelism    *int   `yaml:"parallelism"`
		Suspend        bool   `yaml:"suspend"`
		Template       struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		AccessModes []string `yaml:"accessModes"` // a PersistentVolumeClaim's
	} `yaml:"spec"`
}

type podSpec struct {
	RestartPolicy string      `yaml:"restartPolicy"`
	Containers    []container `yaml:"containers"`
	Volumes       []struct {
		Name                  string `yaml:"name"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
		ConfigMap *struct {
			Name  string `yaml:"name"`
			Items []any  `yaml:"items"`
		} `yaml:"configMap"`
		EmptyDir *struct{} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type container struct {
	Name       string   `yaml:"name"`
	Image      string   `yaml:"image"`
	WorkingDir string   `yaml:"workingDir"`
	Command    []string `yaml:"command"`
	Args       []string `yaml:"args"`
	Env        []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

const (
	image      = "registry.example.com/batch:test"
	totalRate  = "150/10s"
	secretName = "stability-api-key" // as README.md tells the user to create it
	configMap  = "batch-manifest"
)

// render runs render.sh and returns its stdout, its stderr and its exit code.
func render(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skipf("render.sh needs sh: %v", err)
	}
	// Read here too, so that go test's cache knows what the result depends on.
	for _, name := range []string{"render.sh", "jobs.yaml"} {
		if _, err := os.Stat(name); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), "sh", append([]string{"render.sh"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run render.sh: %v", err)
	}
	return out.String(), errb.String(), code
}

// parse decodes every document of a YAML stream.
func parse(t *testing.T, text string) []object {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(text))
	var objs []object
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("not valid YAML: %v\n%s", err, text)
		}
		objs = append(objs, o)
	}
}

// find returns the object of kind and name.
func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("no %s %s in the rendered manifest", kind, name)
	return object{}
}

// only returns a Job's one container, whose command is sh -c SCRIPT.
func only(t *testing.T, job object) (container, string) {
	t.Helper()
	cs := job.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("job %s has %d containers, want 1", job.Metadata.Name, len(cs))
	}
	c := cs[0]
	if len(c.Command) != 3 || c.Command[0] != "sh" || c.Command[1] != "-c" || len(c.Args) != 0 {
		t.Fatalf("job %s runs %q %q, want sh -c SCRIPT", job.Metadata.Name, c.Command, c.Args)
	}
	if c.Image != image {
		t.Errorf("job %s runs image %q, want the one rendered, %q", job.Metadata.Name, c.Image, image)
	}
	return c, c.Command[2]
}

// claim returns the PersistentVolumeClaim a Job mounts as volume name.
func claim(t *testing.T, job object, name string) string {
	t.Helper()
	for _, v := range job.Spec.Template.Spec.Volumes {
		if v.Name == name && v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ClaimName
		}
	}
	t.Fatalf("job %s mounts no PersistentVolumeClaim as %s", job.Metadata.Name, name)
	return ""
}

// TestRenderThreeShards renders the example for 3 shards and checks the
// objects a cluster would get.
func TestRenderThreeShards(t *testing.T) {
	text, stderr, code := render(t, "3", totalRate, image)
	if code != 0 {
		t.Fatalf("render.sh 3 %s: exit %d\n%s", totalRate, code, stderr)
	}
	if i := strings.Index(text, "__"); i >= 0 {
		t.Errorf("rendered manifest still holds a placeholder: %q", text[i:min(len(text), i+20)])
	}
	objs := parse(t, text)
	shards := find(t, objs, "Job", "batch-shards")
	if shards.APIVersion != "batch/v1" || shards.Spec.CompletionMode != "Indexed" {
		t.Errorf("batch-shards is %s %s, want a batch/v1 Indexed Job", shards.APIVersion, shards.Spec.CompletionMode)
	}
	for name, got := range map[string]*int{"completions": shards.Spec.Completions, "parallelism": shards.Spec.Parallelism} {
		if got == nil || *got != 3 {
			t.Errorf("batch-shards %s = %v, want 3", name, got)
		}
	}
	if got := shards.Spec.Template.Spec.RestartPolicy; got != "Never" {
		t.Errorf("batch-shards restartPolicy = %q, want Never (backoffLimitPerIndex needs it)", got)
	}
	c, _ := only(t, shards)
	var key bool
	for _, e := range c.Env {
		if e.Name != "STABILITY_API_KEY" {
			continue
		}
		key = true
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
			e.ValueFrom.SecretKeyRef.Name != secretName || e.ValueFrom.SecretKeyRef.Key != "STABILITY_API_KEY" {
			t.Errorf("STABILITY_API_KEY does not come from key STABILITY_API_KEY of Secret %s", secretName)
		}
	}
	if !key {
		t.Error("batch-shards sets no STABILITY_API_KEY")
	}
	// Each pod runs at 1/N of the rate: pods sharing one rate-limit file
	// (it is where batch's cache folder is, unless moved) would together
	// run at 1/N.
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	rateDir := env["BATCH_RATE_DIR"]
	switch {
	case rateDir != "":
	case env["XDG_CACHE_HOME"] != "":
		rateDir = env["XDG_CACHE_HOME"] + "/batch/rate"
	default:
		rateDir = env["HOME"] + "/.cache/batch/rate"
	}
	for _, m := range c.VolumeMounts {
		if m.Name == "out" && (rateDir == m.MountPath || strings.HasPrefix(rateDir, m.MountPath+"/")) {
			t.Errorf("the shards' rate-limit folder %s is on the shared volume: the pods would share one limit, each at 1/3 of it", rateDir)
		}
	}

	merge := find(t, objs, "Job", "batch-merge")
	if !merge.Spec.Suspend {
		t.Error("batch-merge is not created suspended: it would merge before the shards are done")
	}
	only(t, merge)

	vol, err := os.ReadFile("volume.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pvcs := parse(t, string(vol))
	if len(pvcs) != 1 || pvcs[0].Kind != "PersistentVolumeClaim" {
		t.Fatalf("volume.yaml holds %d objects, want one PersistentVolumeClaim", len(pvcs))
	}
	pvc := pvcs[0]
	if !slices.Equal(pvc.Spec.AccessModes, []string{"ReadWriteMany"}) {
		t.Errorf("volume.yaml accessModes = %q, want ReadWriteMany: shards on several nodes write to it", pvc.Spec.AccessModes)
	}
	for _, job := range []object{shards, merge} {
		if got := claim(t, job, "out"); got != pvc.Metadata.Name {
			t.Errorf("job %s mounts claim %q, want volume.yaml's %q", job.Metadata.Name, got, pvc.Metadata.Name)
		}
	}
}

// TestRenderRefuses: arguments render.sh must not turn into a manifest.
func TestRenderRefuses(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"too few arguments", []string{"3", totalRate}, "usage"},
		{"one shard", []string{"1", totalRate, image}, "from 2"},
		{"zero shards", []string{"0", totalRate, image}, "from 2"},
		{"shards not a number", []string{"three", totalRate, image}, "from 2"},
		{"rate without a window", []string{"3", "150", image}, "N/DURATION"},
		{"rate of zero", []string{"3", "0/10s", image}, "N/DURATION"},
		{"more shards than requests per window", []string{"151", totalRate, image}, "at most 150"},
		{"image with a space", []string{"3", totalRate, "a b"}, "IMAGE"},
		{"image that would break sed", []string{"3", totalRate, "x|y"}, "IMAGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := render(t, tt.args...)
			if code != 2 || out != "" || !strings.Contains(stderr, tt.want) {
				t.Errorf("render.sh %q: exit %d, stdout %d bytes, stderr %q; want exit 2, nothing on stdout and %q", tt.args, code, len(out), stderr, tt.want)
			}
		})
	}
}

// TestRenderUnevenSplit: a rate that does not divide by the shards is
// rendered, with a note saying what each shard gets.
func TestRenderUnevenSplit(t *testing.T) {
	out, stderr, code := render(t, "4", totalRate, image)
	if code != 0 || out == "" {
		t.Fatalf("render.sh 4 %s: exit %d\n%s", totalRate, code, stderr)
	}
	if want := "each shard runs at 37/10s, 148/10s in all"; !strings.Contains(stderr, want) {
		t.Errorf("render.sh 4 %s stderr = %q, want %q", totalRate, stderr, want)
	}
}

// pod stands in for a pod's filesystem: each volume mount and the working
// folder are folders under root, and the image's PATH holds a batch that
// records its arguments and runs the real binary, `run` against its
// in-process sandbox.
type pod struct {
	t    *testing.T
	root string
	bin  string // the folder of the recording batch
	log  string // where it records, one line per call, arguments NUL-separated
}

func newPod(t *testing.T, realBatch string) *pod {
	p := &pod{t: t, root: t.TempDir()}
	p.bin = filepath.Join(p.root, "image-bin")
	p.log = filepath.Join(p.root, "batch-calls")
	if err := os.Mkdir(p.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf(`#!/bin/sh
{ printf '%%s\0' "$@"; echo; } >>%s
case $1 in
  run) exec %s "$@" --sandbox ;;
  *) exec %s "$@" ;;
esac
`, shellQuote(p.log), shellQuote(realBatch), shellQuote(realBatch))
	if err := os.WriteFile(filepath.Join(p.bin, "batch"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// path maps an absolute path in the pod to the folder standing in for it.
func (p *pod) path(podPath string) string { return filepath.Join(p.root, filepath.FromSlash(podPath)) }

// run runs a container's sh -c script as the pod would, with the container's
// env (the Secret's key faked), plus extra variables, and returns the calls
// of batch it made (each its arguments) and the exit code.
func (p *pod) run(c container, script string, extra ...string) (calls [][]string, code int, output string) {
	p.t.Helper()
	env := []string{"PATH=" + p.bin + string(os.PathListSeparator) + os.Getenv("PATH"), "TMPDIR=" + p.path("/tmp")}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom != nil:
			v = "sk-test-not-a-real-key" // what the Secret would hold
		case strings.HasPrefix(v, "/"):
			v = p.mounted(c, v)
		}
		env = append(env, e.Name+"="+v)
	}
	env = append(env, extra...)
	for _, m := range c.VolumeMounts {
		// Run as it is, such a script would write to the machine's own
		// folder of that name.
		if strings.Contains(script, m.MountPath) {
			p.t.Fatalf("container %s's script names %s: reach a volume by a path relative to workingDir, as the test stands in for it", c.Name, m.MountPath)
		}
		if err := os.MkdirAll(p.path(m.MountPath), 0o755); err != nil {
			p.t.Fatal(err)
		}
	}
	if err := os.Truncate(p.log, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		p.t.Fatal(err)
	}
	// The working folder may be the image's (read-only) own: the script
	// reaches its volumes from it by relative paths.
	if err := os.MkdirAll(p.path(c.WorkingDir), 0o755); err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.CommandContext(p.t.Context(), "sh", "-c", script)
	cmd.Dir = p.path(c.WorkingDir)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("run %s's script: %v", c.Name, err)
	}
	log, err := os.ReadFile(p.log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		p.t.Fatal(err)
	}
	for line := range strings.Lines(string(log)) {
		args := strings.Split(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\x00"), "\x00")
		calls = append(calls, args)
	}
	return calls, code, string(out)
}

// mounted maps podPath, which must lie in one of c's volumes (the root
// filesystem is read-only), to its stand-in folder.
func (p *pod) mounted(c container, podPath string) string {
	p.t.Helper()
	for _, m := range c.VolumeMounts {
		if podPath == m.MountPath || strings.HasPrefix(podPath, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return p.path(podPath)
		}
	}
	p.t.Fatalf("container %s uses %s, which is in none of its volumes", c.Name, podPath)
	return ""
}

// buildBatch builds cmd/batch as the Dockerfile does.
func buildBatch(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "batch")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", bin, "../../cmd/batch")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/batch: %v\n%s", err, out)
	}
	return bin
}

// TestShardsAndMerge renders 3 shards, runs each pod's command with
// JOB_COMPLETION_INDEX 0, 1 and 2 against the sandbox, then the merge's,
// and checks the merged report has every job of the manifest exactly once.
func TestShardsAndMerge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds batch and runs it")
	}
	text, stderr, code := render(t, "3", totalRate, image)
	if code != 0 {
		t.Fatalf("render.sh: exit %d\n%s", code, stderr)
	}
	objs := parse(t, text)
	shardC, shardScript := only(t, find(t, objs, "Job", "batch-shards"))
	mergeC, mergeScript := only(t, find(t, objs, "Job", "batch-merge"))
	batch := buildBatch(t)
	p := newPod(t, batch)

	// The ConfigMap batch-manifest, mounted whole: its key manifest.yaml
	// is a file in the mount.
	manifestDir := ""
	for _, v := range find(t, objs, "Job", "batch-shards").Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == configMap && len(v.ConfigMap.Items) == 0 {
			for _, m := range shardC.VolumeMounts {
				if m.Name == v.Name {
					manifestDir = m.MountPath
				}
			}
		}
	}
	if manifestDir == "" {
		t.Fatalf("batch-shards mounts no ConfigMap %s whole", configMap)
	}
	src, err := os.ReadFile("../quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(p.path(manifestDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.path(manifestDir), "manifest.yaml"), src, 0o644); err != nil {
		t.Fatal(err)
	}

	// The template passes the account's whole rate: batch itself divides
	// --rate by N under --shard K/N. Hold the binary to that.
	help, _ := exec.CommandContext(t.Context(), batch, "help", "run").CombinedOutput()
	if !strings.Contains(string(help), "divided by N with --shard K/N") {
		t.Fatalf("batch help run no longer says --rate is divided by N under --shard; the template passes the account's whole rate:\n%s", help)
	}
	wantN, wantWindow, err := manifest.ParseRate(totalRate)
	if err != nil {
		t.Fatal(err)
	}

	var folders []string
	for i := range 3 {
		calls, code, out := p.run(shardC, shardScript, "JOB_COMPLETION_INDEX="+strconv.Itoa(i))
		if code != 0 {
			t.Fatalf("shard pod with JOB_COMPLETION_INDEX=%d: exit %d\n%s", i, code, out)
		}
		var run []string
		for _, c := range calls {
			if c[0] == "run" {
				run = c
			}
		}
		if run == nil {
			t.Fatalf("shard pod %d did not call batch run: %q", i, calls)
		}
		wantShard := fmt.Sprintf("%d/3", i+1)
		if got, _ := shardtest.FlagValue(run, "shard"); got != wantShard {
			t.Errorf("pod with JOB_COMPLETION_INDEX=%d runs --shard %q, want %q", i, got, wantShard)
		}
		rate, _ := shardtest.FlagValue(run, "rate")
		n, window, err := manifest.ParseRate(rate)
		if err != nil {
			t.Fatalf("pod %d runs --rate %q: %v", i, rate, err)
		}
		if each := max(n/3, 1); each != wantN/3 || window != wantWindow {
			t.Errorf("pod %d runs --rate %q, so each shard at %d/%v; want %s over 3, %d/%v", i, rate, each, window, totalRate, wantN/3, wantWindow)
		}
		plannedWhole := slices.ContainsFunc(calls, func(c []string) bool {
			_, sharded := shardtest.FlagValue(c, "shard")
			return c[0] == "plan" && !sharded
		})
		if !plannedWhole {
			t.Errorf("pod %d does not check the whole manifest's budget with batch plan first: %q", i, calls)
		}
		folder := fmt.Sprintf("shard-%d-of-3", i+1)
		if _, err := os.Stat(filepath.Join(p.mounted(mergeC, mergeC.WorkingDir), folder, report.RunFile)); err != nil {
			t.Fatalf("shard pod %d left no report where the merge looks: %v\n%s", i, err, out)
		}
		folders = append(folders, folder)
	}

	outDir := p.mounted(mergeC, mergeC.WorkingDir)
	calls, code, out := p.run(mergeC, mergeScript)
	if code != 0 {
		t.Fatalf("merge pod: exit %d\n%s", code, out)
	}
	var merges int
	for _, c := range calls {
		if len(c) > 3 && c[0] == "report" && slices.Equal(c[len(c)-3:], folders) {
			merges++
		}
	}
	if merges != 1 {
		t.Errorf("merge pod called batch report with the 3 shard folders %d times, want 1: %q", merges, calls)
	}
	merged, err := report.ReadRun(outDir)
	if err != nil {
		t.Fatalf("merged report: %v\n%s", err, out)
	}
	wholeJobs := shardtest.PlanJobs(t, batch, filepath.Join(p.path(manifestDir), "manifest.yaml"))
	shardtest.CheckMerged(t, merged, wholeJobs)
	for _, j := range merged.Jobs {
		if j.Status != "succeeded" {
			t.Errorf("merged job %s is %s, want succeeded", j.ID, j.Status)
		}
		for _, img := range j.Images {
			if _, err := os.Stat(filepath.Join(outDir, filepath.FromSlash(img.Path))); err != nil {
				t.Errorf("merged job %s's image %s is not beside the merged report: %v", j.ID, img.Path, err)
			}
		}
	}
	if merged.Totals.Jobs != len(wholeJobs) || merged.Shard != "" {
		t.Errorf("merged report: %d jobs, shard %q; want the whole manifest's %d, no shard", merged.Totals.Jobs, merged.Shard, len(wholeJobs))
	}
	for _, name := range []string{"report.md", "report.html"} {
		if fi, err := os.Stat(filepath.Join(outDir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("merge pod left no %s: %v", name, err)
		}
	}

	// A shard that left no report: the merge stops and writes nothing.
	for _, name := range []string{"report.json", "report.md", "report.html"} {
		if err := os.Remove(filepath.Join(outDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(outDir, folders[1]), filepath.Join(outDir, "elsewhere")); err != nil {
		t.Fatal(err)
	}
	if _, code, out := p.run(mergeC, mergeScript); code == 0 {
		t.Errorf("merge pod with shard 2 missing: exit 0, want a failure\n%s", out)
	}
	left, err := os.ReadDir(outDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if !e.IsDir() {
			t.Errorf("merge pod with shard 2 missing left %s behind", e.Name())
		}
	}
}
