// Package shardtest holds what the tests of the sharded examples (the
// GitHub Actions matrix in examples/ci, the Kubernetes Indexed Job in
// examples/k8s) check alike: the arguments their batch commands get, and
// that the merged report holds the whole manifest.
package shardtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/report"
)

// FlagValue returns the value of --name in args (as --name V or --name=V).
func FlagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// PlanJobs returns the jobs of manifest as batch, the path of a built
// batch, plans them (`batch plan --format json`).
func PlanJobs(t testing.TB, batch, manifest string) []report.PlanJob {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), batch, "plan", "--format", "json", manifest).Output()
	if err != nil {
		t.Fatalf("batch plan: %v", err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	plan, err := report.ReadPlan(path)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []report.PlanJob
	err = plan.Jobs.Each(func(_ int64, j *report.PlanJob) error {
		jobs = append(jobs, *j)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// CheckMerged fails t unless merged, the report merged from every shard,
// holds each of jobs once, and no other job.
func CheckMerged(t testing.TB, merged *report.Run, jobs []report.PlanJob) {
	t.Helper()
	count := map[string]int{}
	for _, j := range merged.Jobs {
		count[j.ID]++
	}
	for _, j := range jobs {
		if count[j.ID] != 1 {
			t.Errorf("job %s is in the merged report %d times, want 1", j.ID, count[j.ID])
		}
		delete(count, j.ID)
	}
	for id := range count {
		t.Errorf("merged report holds job %s, which the manifest does not", id)
	}
}
