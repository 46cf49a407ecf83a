package ci_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestPipelinesCallTheScript checks that both example pipelines are valid
// YAML and run cost-check.sh with a base ref and a threshold, so what the
// script test covers is what CI runs.
func TestPipelinesCallTheScript(t *testing.T) {
	for _, name := range []string{"github-actions.yml", "gitlab-ci.yml"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := yaml.Unmarshal(data, &doc); err != nil {
				t.Fatalf("%s is not valid YAML: %v", name, err)
			}
			text := string(data)
			for _, want := range []string{"examples/ci/cost-check.sh \"", "COST_FAIL_ABOVE:", "COST_FAIL_INCREASE:", "cost-report.md"} {
				if !strings.Contains(text, want) {
					t.Errorf("%s does not contain %q", name, want)
				}
			}
		})
	}
}

// installScript returns the shell of a pipeline's step that installs batch,
// and the variables the pipeline sets for it.
func installScript(t *testing.T, name string) (script string, vars map[string]string) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	vars = map[string]string{}
	switch name {
	case "github-actions.yml":
		var wf struct {
			Jobs map[string]struct {
				Env   map[string]string `yaml:"env"`
				Steps []struct {
					Name string `yaml:"name"`
					Run  string `yaml:"run"`
				} `yaml:"steps"`
			} `yaml:"jobs"`
		}
		if err := yaml.Unmarshal(data, &wf); err != nil {
			t.Fatal(err)
		}
		for _, s := range wf.Jobs["cost"].Steps {
			if s.Name == "Install batch" {
				script = s.Run
			}
		}
		vars = wf.Jobs["cost"].Env
	case "gitlab-ci.yml":
		var ci map[string]struct {
			Variables map[string]string `yaml:"variables"`
			Script    []string          `yaml:"script"`
		}
		if err := yaml.Unmarshal(data, &ci); err != nil {
			t.Fatal(err)
		}
		for _, line := range ci["image-cost"].Script {
			if strings.Contains(line, "go install") {
				script = line
			}
		}
		vars = ci["image-cost"].Variables
	}
	if script == "" {
		t.Fatalf("%s has no step that installs batch", name)
	}
	return script, vars
}

// TestPipelinesInstallBatch runs each pipeline's install step as its CI
// would, from this repository (BATCH_REPO empty, the pipelines' setting)
// and from a clone of it (BATCH_REPO set), and checks that the batch it
// installs is the one cost-check.sh then finds on PATH.
func TestPipelinesInstallBatch(t *testing.T) {
	for _, tool := range []string{"bash", "git", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the install step needs %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	branch, err := exec.CommandContext(t.Context(), "git", "-C", root, "symbolic-ref", "--quiet", "--short", "HEAD").Output()
	for _, name := range []string{"github-actions.yml", "gitlab-ci.yml"} {
		script, vars := installScript(t, name)
		if strings.Contains(script, "@latest") {
			t.Errorf("%s installs batch with @latest, which the module proxy cannot serve:\n%s", name, script)
		}
		if vars["BATCH_REPO"] != "" {
			t.Errorf("%s sets BATCH_REPO to %q, want it empty (batch's own repository)", name, vars["BATCH_REPO"])
		}
		sources := []struct{ name, repo, ref string }{{"this repository", "", vars["BATCH_REF"]}}
		if err == nil {
			sources = append(sources, struct{ name, repo, ref string }{"a clone", "file://" + filepath.ToSlash(root), strings.TrimSpace(string(branch))})
		}
		for _, src := range sources {
			t.Run(name+"/"+src.name, func(t *testing.T) {
				tmp := t.TempDir()
				pathFile := filepath.Join(tmp, "github-path")
				// What cost-check.sh runs next: batch, from PATH.
				full := script + "\n" + `if [ -s "$GITHUB_PATH" ]; then PATH="$(cat "$GITHUB_PATH"):$PATH"; fi; command -v batch`
				cmd := exec.CommandContext(t.Context(), "bash", "-e", "-c", full)
				cmd.Dir = root
				cmd.Env = append(os.Environ(), "BATCH_REPO="+src.repo, "BATCH_REF="+src.ref,
					"RUNNER_TEMP="+tmp, "GITHUB_PATH="+pathFile, "TMPDIR="+tmp,
					"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s's install step: %v\n%s", name, err, out)
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				found := lines[len(lines)-1]
				if !strings.HasPrefix(found, tmp) {
					t.Errorf("after %s's install step, batch on PATH is %q, want the one it installed under %s\n%s", name, found, tmp, out)
				}
				if !strings.Contains(string(out), "batch ") {
					t.Errorf("%s's install step did not run batch version:\n%s", name, out)
				}
			})
		}
	}
}
