package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuick runs the whole bench at its tiny -quick sizes into a temporary
// file, as `go run ./bench -quick` would, and checks that the document has
// every section with its tables, figures for both builds, the commands
// that reproduce them, and no failed measurement. It keeps the bench from
// rotting as batch's flags and packages change; its figures are not
// checked, since they mean nothing at these sizes. It builds batch twice
// (the base from git archive) and runs every section: about a minute, so
// it is skipped with -short.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds batch twice and runs every section at tiny sizes; skipped with -short")
	}
	out := filepath.Join(t.TempDir(), "PERFORMANCE.md")
	var stderr bytes.Buffer
	if code := run([]string{"-quick", "-install=false", "-o", out}, io.Discard, &stderr); code != exitOK {
		t.Fatalf("bench -quick: exit %d\n%s", code, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, tt := range []struct {
		name, want string
	}{
		{"title", "# Performance\n"},
		{"quick warning", "**Quick mode**"},
		{"machine line", "CPUs"},
		{"go version", "; Go go1."},
		{"base built", "- **Base:** `ad29efa"},
		{"head", "- **Head:** `working tree"},
		{"plan section", "\n## Planning against a bare YAML decode\n"},
		{"decode into any", "`yamldecode -into any explicit-200.yaml`"},
		{"decode into node", "`yamldecode -into node explicit-1000.yaml`"},
		{"base plan", "| `batch plan explicit-200.yaml` | base |"},
		{"head plan json", "| `batch plan --format json explicit-1000.yaml` | head |"},
		{"matrix plan", "| `batch plan matrix-2000.yaml` | head |"},
		{"diff", "| `batch diff diff-base-1000.yaml diff-head-1000.yaml` | base |"},
		{"run section", "\n## Running against a keep-alive loop and GNU parallel\n"},
		{"batch run base", "| batch run | base | `batch run --api-url http://127.0.0.1:8150 --concurrency 64 --rate 1000000/1s --out out-base run-100.yaml` |"},
		{"keep-alive loop", "| keep-alive Go loop | — | `keepalive -url http://127.0.0.1:8150 -jobs jobs-100.tsv -out out-loop -service edit/inpaint -image input.png -concurrency 64 -format webp` | "},
		{"parallel row", "| GNU parallel + curl | — |"},
		{"rate section", "\n## Rate use with one run and two at once\n"},
		{"rate one run", "| 50ms | one | head |"},
		{"rate two runs", "| 50ms | two at once | base |"},
		{"rate command", "`batch run --api-url http://127.0.0.1:8150 --concurrency 40 --rate 20/1s --max-pause 2s --out rate-a-15-out rate-a-15.yaml`"},
		{"rss section", "\n## Peak memory of a run by job count\n"},
		{"rss row", "| 200 | head | `batch run --api-url http://127.0.0.1:8150 --concurrency 64 --rate 1000000/1s --out out-head rss-200.yaml` |"},
		{"reproduce", "Reproduce this section: `go run ./bench -only rss -o FILE`."},
		{"how to run", "\n## How to run\n"},
	} {
		if !strings.Contains(doc, tt.want) {
			t.Errorf("%s: the document lacks %q", tt.name, tt.want)
		}
	}
	for _, bad := range []string{"failed:", "n/a (not built)", "unknown"} {
		if strings.Contains(doc, bad) {
			i := strings.Index(doc, bad)
			t.Errorf("the document has %q: …%s…", bad, doc[max(0, i-200):min(len(doc), i+200)])
		}
	}
	if t.Failed() {
		t.Logf("document:\n%s\nstderr:\n%s", doc, stderr.String())
	}
}

func TestWindows(t *testing.T) {
	at := func(ms ...int) []time.Time {
		t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	every := func(step, n int) []int {
		var ms []int
		for i := range n {
			ms = append(ms, i*step)
		}
		return ms
	}
	for _, tt := range []struct {
		name       string
		sends      []time.Time
		peak, mean string
	}{
		{"at the limit", at(every(100, 40)...), "10 (100%)", "10 (100%)"},
		{"a burst over it", at(append(every(0, 12), 2500)...), "12 (120%)", "6 (60%)"},
		{"a window excludes its start", at(0, 1000), "1 (10%)", "1 (10%)"},
		{"half the limit", at(every(200, 21)...), "5 (50%)", "5 (50%)"},
		{"shorter than a window", at(0, 10, 20), "3 (30%)", "— (under one window)"},
		{"out of order", at(900, 0, 950, 50), "4 (40%)", "— (under one window)"},
		{"none", nil, "—", "—"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			peak, mean := windows(tt.sends, time.Second, 10)
			if peak != tt.peak || mean != tt.mean {
				t.Errorf("windows(%s) = %q, %q, want %q, %q", tt.name, peak, mean, tt.peak, tt.mean)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		only    []string
		timeout time.Duration
		wantErr bool
	}{
		{"defaults", nil, []string{"plan", "run", "rate", "rss"}, 5 * time.Minute, false},
		{"quick", []string{"-quick"}, []string{"plan", "run", "rate", "rss"}, 2 * time.Minute, false},
		{"some sections", []string{"-only", "rss, plan"}, []string{"rss", "plan"}, 5 * time.Minute, false},
		{"unknown section", []string{"-only", "plan,speed"}, nil, 0, true},
		{"arguments", []string{"extra"}, nil, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error %v, want error %v", tt.args, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if strings.Join(c.only, ",") != strings.Join(tt.only, ",") || c.timeout != tt.timeout {
				t.Errorf("parseFlags(%q) = only %q, timeout %v; want %q, %v", tt.args, c.only, c.timeout, tt.only, tt.timeout)
			}
		})
	}
}

func TestTable(t *testing.T) {
	tb := &table{head: []string{"command", "time"}}
	tb.add("`a | b`", "1.00 s")
	want := "| command | time |\n| --- | --- |\n| `a \\| b` | 1.00 s |\n"
	if got := tb.String(); got != want {
		t.Errorf("table = %q, want %q", got, want)
	}
}
