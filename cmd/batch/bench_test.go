package main

import (
	"io"
	"testing"
	"time"
)

// BenchmarkPlanMillion runs `batch plan` in-process on a manifest that
// expands to 1,000,000 jobs: load, validate, expand, price and render.
// Compare with internal/manifest's BenchmarkYAMLDecodeMillion, the bare
// yaml.v3 decode of the same manifest.
func BenchmarkPlanMillion(b *testing.B) {
	for _, format := range []string{"table", "json"} {
		b.Run(format, func(b *testing.B) {
			e := &env{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard, now: time.Now}
			b.ReportAllocs()
			for b.Loop() {
				if code := e.main(b.Context(), []string{"plan", "--format", format, "testdata/million.yaml"}); code != exitOK {
					b.Fatalf("plan: exit %d", code)
				}
			}
		})
	}
}
