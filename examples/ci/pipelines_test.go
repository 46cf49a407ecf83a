package ci_test

import (
	"os"
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
