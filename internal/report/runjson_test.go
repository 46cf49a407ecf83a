package report

import (
	"encoding/json"
	"reflect"
	"testing"
)

// fullRunJob is a RunJob with every field set, recursively, strings to
// text (see setAll).
func fullRunJob(text string) RunJob {
	var j RunJob
	setAll(reflect.ValueOf(&j).Elem(), text)
	return j
}

// TestRunJobJSON holds appendRunJob to json.Marshal: with every field of
// RunJob set (a field added to RunJob but not to appendRunJob fails here),
// with none, with empty lists, and with strings that need escaping.
func TestRunJobJSON(t *testing.T) {
	tests := []struct {
		name string
		job  RunJob
	}{
		{"zero", RunJob{}},
		{"every field", fullRunJob("a fox")},
		{"escapes", fullRunJob("quote \" backslash \\ <b> & tab\t nl\n cr\r nul\x00 esc\x1b del\x7f")},
		{"unicode", fullRunJob("é — 狐 🦊 \u2028 \u2029 \ufffd")},
		{"invalid utf-8", fullRunJob("bad \xff\xfe byte, cut \xe2\x80")},
		{"empty lists", RunJob{Vars: []Var{}, DependsOn: []string{}, Inputs: []Input{}, Settings: []Setting{}, Images: []Image{}}},
		{"some fields", RunJob{Index: 3, ID: "a", Group: "a", Service: "edit/inpaint", Width: 64, Height: 64, OutputFormat: "webp",
			Inputs: []Input{{Field: "image", Path: "in.png"}}, Prompt: "a lighthouse", Settings: []Setting{{Name: "seed", Value: "7"}},
			Samples: 1, Status: StatusSucceeded, Credits: 50_000, Attempts: 1,
			Images: []Image{{Path: "images/a.webp", Seed: 7, FinishReason: "SUCCESS", SHA256: "be"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(tt.job)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendRunJob(nil, &tt.job); string(got) != string(want) {
				t.Errorf("appendRunJob =\n%s\nwant (json.Marshal)\n%s", got, want)
			}
		})
	}
}
