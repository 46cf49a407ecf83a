package manifest

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestIDHazard(t *testing.T) {
	tests := []struct {
		id, instead string // instead is "" for a safe id
	}{
		{"con", "con-job"},
		{"CON", "CON-job"},
		{"Nul", "Nul-job"},
		{"nul.txt", "nul-job.txt"},
		{"con.tar.gz", "con-job.tar.gz"},
		{"prn", "prn-job"},
		{"aux.png", "aux-job.png"},
		{"com1", "com1-job"},
		{"COM9", "COM9-job"},
		{"lpt1", "lpt1-job"},
		{"LpT5.x", "LpT5-job.x"},
		{"cats.", "cats"},
		{"cats..", "cats"},
		{"com0", ""},
		{"com10", ""},
		{"lpt", ""},
		{"console", ""},
		{"nulls", ""},
		{"a.nul", ""},
		{"con-job", ""},
		{"cats.v2", ""},
	}
	for _, tt := range tests {
		problem, instead := idHazard(tt.id)
		if (problem == "") != (tt.instead == "") || instead != tt.instead {
			t.Errorf("idHazard(%q) = %q, %q; want a problem and %q", tt.id, problem, instead, tt.instead)
		}
		if instead != "" {
			if p, _ := idHazard(instead); p != "" {
				t.Errorf("idHazard(%q) suggests %q, which is unsafe too: %s", tt.id, instead, p)
			}
		}
	}
}

// TestDerivedIDsAreSafe: a prompt that slugs to a Windows device name gets
// "-job" appended, also as a matrix's base.
func TestDerivedIDsAreSafe(t *testing.T) {
	m := mustParse(t, `version: 1
engine: stable-diffusion-xl-1024-v1-0
jobs:
  - prompt: CON
  - prompt: nul
  - prompt: "com1!"
  - prompt: LPT2
    matrix:
      seed: [1, 2]
  - prompt: com0
  - prompt: aux
    seed: 1
  - prompt: aux
    seed: 2
`)
	got := ids(jobsOf(m))
	want := []string{"con-job", "nul-job", "com1-job", "lpt2-job-1", "lpt2-job-2", "com0", "aux-job-HASH", "aux-job-HASH"}
	if len(got) != len(want) {
		t.Fatalf("ids = %v, want %v", got, want)
	}
	for i := range want {
		if i >= 6 {
			// The hashes depend on the settings; what matters is the base.
			if !strings.HasPrefix(got[i], "aux-job-") {
				t.Errorf("id %d = %q, want aux-job-HASH", i, got[i])
			}
			continue
		}
		if got[i] != want[i] {
			t.Errorf("id %d = %q, want %q", i, got[i], want[i])
		}
	}
	for _, id := range got {
		if p, _ := idHazard(id); p != "" {
			t.Errorf("derived id %q: %s", id, p)
		}
	}
}

// TestIDsIgnoreCase: job ids are file names, so ids that differ only in
// case name one file on macOS and Windows. Explicit ids are lowercased, so
// a matrix row whose id equals another job's but for case takes a hash id.
func TestIDsIgnoreCase(t *testing.T) {
	m := mustParse(t, `version: 1
engine: stable-diffusion-xl-1024-v1-0
jobs:
  - id: Fox-Red
    prompt: a red fox
  - id: FOX
    prompt: a {c} fox
    matrix:
      c: [red, blue]
`)
	got := ids(jobsOf(m))
	if got[0] != "fox-red" || got[2] != "fox-blue" || got[1] == "fox-red" || len(got[1]) != len("fox-")+12 {
		t.Errorf("ids = %v, want fox-red, fox-HASH, fox-blue", got)
	}
	lower := make([]string, len(got))
	for i, id := range got {
		lower[i] = strings.ToLower(id)
	}
	slices.Sort(lower)
	if len(slices.Compact(lower)) != len(got) {
		t.Errorf("ids %v are not unique", got)
	}
}

// TestValidID holds validID to idPattern, which the schema publishes.
func TestValidID(t *testing.T) {
	re := regexp.MustCompile(idPattern)
	for _, id := range []string{
		"a", "A", "0", "a.b", "a_b", "a-b", "a b", "-a", ".a", "_a", "a!", "é", "",
		strings.Repeat("x", 64), strings.Repeat("x", 65), "mug-front.v2", "a\n",
	} {
		if got, want := validID(id), re.MatchString(id); got != want {
			t.Errorf("validID(%q) = %v, want %v", id, got, want)
		}
	}
}
