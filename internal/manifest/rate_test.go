package manifest

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestParseRate checks the one reader of N/DURATION, and that a manifest's
// rate accepts exactly what it accepts (the --rate flag reads it too).
func TestParseRate(t *testing.T) {
	tests := []struct {
		in     string
		n      int
		window time.Duration
		ok     bool
	}{
		{"150/10s", 150, 10 * time.Second, true},
		{"1/1m", 1, time.Minute, true},
		{"60/s", 60, time.Second, true},
		{"1000/m", 1000, time.Minute, true},
		{"5/500ms", 5, 500 * time.Millisecond, true},
		{"3/1m30s", 3, 90 * time.Second, true},
		{"2/.5s", 2, 500 * time.Millisecond, true},
		{" 5/500ms ", 5, 500 * time.Millisecond, true},
		{"2147483647/1h", 2147483647, time.Hour, true},
		{"2147483648/1h", 0, 0, false},
		{"0/10s", 0, 0, false},
		{"10", 0, 0, false},
		{"10/", 0, 0, false},
		{"10/10", 0, 0, false},
		{"10/0s", 0, 0, false},
		{"10/-1s", 0, 0, false},
		{"10/+1s", 0, 0, false},
		{"+10/1s", 0, 0, false},
		{"1_0/1s", 0, 0, false},
		{"x/10s", 0, 0, false},
		{"10/ s", 0, 0, false},
		{"10/fortnight", 0, 0, false},
	}
	const head = "version: 1\nengine: stable-diffusion-xl-1024-v1-0\nrate: "
	const jobs = "\njobs:\n  - prompt: a fox\n"
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, w, err := ParseRate(tt.in)
			if (err == nil) != tt.ok || n != tt.n || w != tt.window {
				t.Errorf("ParseRate(%q) = %d, %v, %v; want %d, %v, ok=%v", tt.in, n, w, err, tt.n, tt.window, tt.ok)
			}
			src := head + strconv.Quote(tt.in) + jobs
			m, err := Parse("m.yaml", []byte(src))
			if (err == nil) != tt.ok {
				t.Fatalf("manifest with rate %q: %v; want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "m.yaml:3:7: rate: ") {
				t.Errorf("manifest with rate %q: %v; want the problem at rate's value", tt.in, err)
			}
			if err == nil && m.Rate != tt.in {
				t.Errorf("manifest with rate %q: Rate = %q, want it as written", tt.in, m.Rate)
			}
		})
	}
}

// TestSchemaRate: the schema's rate pattern agrees with ParseRate on what
// a manifest can hold.
func TestSchemaRate(t *testing.T) {
	s := compileSchema(t)
	for _, in := range []string{"150/10s", "60/s", "1000/m", "3/1m30s", "2/.5s", " 5/500ms ", "0/10s", "10", "10/10", "10/-1s", "x/10s", "10/ s"} {
		_, _, perr := ParseRate(in)
		src := "version: 1\nengine: stable-diffusion-xl-1024-v1-0\nrate: " + strconv.Quote(in) + "\njobs:\n  - prompt: a fox\n"
		serr := s.Validate(yamlToJSON(t, []byte(src)))
		if (perr == nil) != (serr == nil) {
			t.Errorf("rate %q: ParseRate says %v, the schema says %v", in, perr, serr)
		}
	}
}
