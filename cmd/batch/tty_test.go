package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestIsTerminalRefusesNonTerminals: the null device is a character
// device but no terminal, so progress written to it must be plain lines;
// nor are pipes, files or buffers terminals.
func TestIsTerminalRefusesNonTerminals(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "stderr.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tt := range []struct {
		name string
		w    io.Writer
	}{
		{os.DevNull, devNull},
		{"a pipe", pw},
		{"a file", file},
		{"a buffer", &bytes.Buffer{}},
	} {
		if isTerminal(tt.w) {
			t.Errorf("isTerminal(%s) = true, want false", tt.name)
		}
	}
}
