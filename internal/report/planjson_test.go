package report

import (
	"encoding/json"
	"reflect"
	"testing"
)

// setAll sets every field of v, recursively, to a value that is not the
// zero value, strings from text.
func setAll(v reflect.Value, text string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(text)
	case reflect.Int, reflect.Int64:
		v.SetInt(-1_234_567)
	case reflect.Uint32:
		v.SetUint(4_000_000_000)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			setAll(s.Index(i), text)
		}
		v.Set(s)
	case reflect.Struct:
		for i := range v.NumField() {
			setAll(v.Field(i), text)
		}
	default:
		panic("setAll: no value for a field of kind " + v.Kind().String())
	}
}

// TestPlanJobJSON holds appendPlanJob to json.Marshal: with every field of
// PlanJob set (a field added to PlanJob but not to appendPlanJob fails
// here), with none, and with strings that need escaping.
func TestPlanJobJSON(t *testing.T) {
	full := func(text string) PlanJob {
		var j PlanJob
		setAll(reflect.ValueOf(&j).Elem(), text)
		return j
	}
	tests := []struct {
		name string
		job  PlanJob
	}{
		{"zero", PlanJob{}},
		{"every field", full("a fox")},
		{"escapes", full("quote \" backslash \\ <b> & tab\t nl\n cr\r bs\b ff\f nul\x00 esc\x1b del\x7f")},
		{"unicode", full("é — 狐 🦊 \u2028 \u2029 \ufffd")},
		{"invalid utf-8", full("bad \xff\xfe byte, cut \xe2\x80")},
		{"runs across words", full("12345678<12345678\"1234567\x00abcdefgh&")},
		{"some fields", PlanJob{Index: 3, ID: "a", Group: "a", Service: "generate/core", Width: 1536, Height: 1536,
			Prompt: "a lighthouse", Samples: 1, Credits: 3_000_000, Inputs: []Input{{Field: "image", From: "b", Index: 1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(tt.job)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendPlanJob(nil, &tt.job); string(got) != string(want) {
				t.Errorf("appendPlanJob =\n%s\nwant (json.Marshal)\n%s", got, want)
			}
		})
	}
}

// FuzzJSONString holds appendJSONString to json.Marshal on any string.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "a fox", "<&>\"\\", "\x00\x1f\x7f", "\u2028x\u2029", "\xff", "é狐🦊", "12345678\n12345678"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// BenchmarkJSONString escapes a prompt of 1,900 plain characters, the bulk
// of a plan's JSON, and compares json.Marshal's escaping of it.
func BenchmarkJSONString(b *testing.B) {
	s := longPrompt()
	b.Run("appendJSONString", func(b *testing.B) {
		b.SetBytes(int64(len(s)))
		var buf []byte
		for b.Loop() {
			buf = appendJSONString(buf[:0], s)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			if _, err := json.Marshal(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}
