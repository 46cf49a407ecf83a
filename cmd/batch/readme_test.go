package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeQuickStart runs the README's Quick start as written, in a copy
// of examples/, each command in-process: all but the one that needs a real
// key must succeed.
func TestReadmeQuickStart(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "\n## Quick start\n")
	_, block, ok2 := strings.Cut(after, "```sh\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no Quick start section with a sh block")
	}
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "examples"), os.DirFS(examples)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "examples", "out")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	ran := 0
	for line := range strings.Lines(block) {
		cmd, _, _ := strings.Cut(line, "#")
		cmd = strings.TrimSpace(cmd)
		if cmd == "" || strings.HasPrefix(cmd, "STABILITY_API_KEY=") { // the one for real
			continue
		}
		cmd, redirect, _ := strings.Cut(cmd, ">")
		args := strings.Fields(cmd)
		if len(args) < 2 || args[0] != "batch" {
			t.Fatalf("Quick start line %q is not a batch command", line)
		}
		r := batchCmd(t, nil, args[1:]...)
		if r.code != exitOK {
			t.Fatalf("Quick start %q: exit %d\n%s", cmd, r.code, r.stderr)
		}
		if redirect = strings.TrimSpace(redirect); redirect != "" {
			if err := os.WriteFile(redirect, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ran++
	}
	if ran < 5 {
		t.Errorf("ran %d Quick start commands, want the README's (at least 5)", ran)
	}
}
