package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestUnreadableInputs: a manifest or price file that is not a regular file,
// is too large, or is not UTF-8 exits 2 with one line saying so, in every
// command that reads it. Each runs as a child process, so a named pipe that
// blocked the read would fail the test instead of hanging it.
func TestUnreadableInputs(t *testing.T) {
	dir := t.TempDir()
	good := signalManifest(t, dir, 2)
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	folder := filepath.Join(dir, "folder.yaml")
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.yaml") // sparse: 600 MiB long, no disk used
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(600 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	latin1 := writeFile(t, dir, "latin1.yaml", "version: 1\nengine: stable-diffusion-v1-5\nname: caf\xe9\njobs:\n  - prompt: a cat\n")
	badPrices := writeFile(t, dir, "prices.yaml", "rules:\n  - engines: [stable-diffusion-v1-5] # \xff\n    kind: flat\n    credits: 0.25\n")
	out := filepath.Join(dir, "out")

	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"plan a named pipe", []string{"plan", fifo}, "batch: " + fifo + " is a named pipe, not a file\n"},
		{"run a named pipe", []string{"run", "--sandbox", "--out", out, fifo}, "batch: " + fifo + " is a named pipe, not a file\n"},
		{"diff a named pipe", []string{"diff", good, fifo}, "batch: " + fifo + " is a named pipe, not a file\n"},
		{"plan a directory", []string{"plan", folder}, "batch: " + folder + " is a directory, not a file\n"},
		{"plan a device", []string{"plan", "/dev/zero"}, "batch: /dev/zero is a device, not a file\n"},
		{"plan a huge file", []string{"plan", huge}, "batch: " + huge + " is 600.0 MiB, over the limit of 512.0 MiB\n"},
		{"plan Latin-1", []string{"plan", latin1}, latin1 + ":3:10: byte 0xe9 is not UTF-8; save the file as UTF-8\nbatch: 1 problem(s) in " + latin1 + "; nothing was sent\n"},
		{"prices from a named pipe", []string{"plan", "--prices", fifo, good}, "batch: read price overrides: " + fifo + " is a named pipe, not a file\n"},
		{"prices not UTF-8", []string{"plan", "--prices", badPrices, good}, "batch: " + badPrices + ":2:40: byte 0xff is not UTF-8; save the file as UTF-8\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, stderr := startBatch(t, nil, tt.args...)
			if code, killedBy := waitExit(t, cmd); code != exitUsage {
				t.Errorf("exit %d (signal %v), want 2", code, killedBy)
			}
			if got := stderr.String(); got != tt.stderr {
				t.Errorf("stderr:\n%s\nwant:\n%s", got, tt.stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s exists: a refused run made its output folder", out)
			}
		})
	}
}

// TestRunIntoUnwritableOut: a run whose output folder cannot be made (a
// regular file stands where OUT, or OUT/images, should be; chmod would not
// stop a test running as root) stops before any request with exit 1 and
// says why once; it used to panic in the run report.
func TestRunIntoUnwritableOut(t *testing.T) {
	for _, blocked := range []string{"out", "out/images"} {
		t.Run(blocked, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, blocked)), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, dir, blocked, "not a folder\n")
			r := batchCmd(t, nil, "run", "--sandbox", "--out", out, "../../examples/quickstart.yaml")
			if r.code != exitFailed {
				t.Errorf("exit %d, want 1\n%s", r.code, r.stderr)
			}
			var errLines []string
			for line := range strings.Lines(r.stderr) {
				if !strings.HasPrefix(line, "batch: sandbox API on ") {
					errLines = append(errLines, line)
				}
			}
			if len(errLines) != 1 || !strings.Contains(errLines[0], filepath.Join(dir, blocked)) {
				t.Errorf("stderr does not name the cause (%s) in one line:\n%s", filepath.Join(dir, blocked), r.stderr)
			}
			if strings.Contains(r.stderr, "report in") || r.stdout != "" {
				t.Errorf("a report or summary of a run that never started:\nstdout %q\nstderr %s", r.stdout, r.stderr)
			}
		})
	}
}

// TestResumeCommandOfShard: an interrupted shard's resume command pins --out
// to the folder given (which holds the shard's folder), not to the shard's
// folder, in which a rerun would nest another; and it gives each --only
// again, not their values joined.
func TestResumeCommandOfShard(t *testing.T) {
	tests := []struct {
		args []string
		out  string
		want string
	}{
		{[]string{"--shard", "2/3", "--out", "o", "m.yaml"}, "o/shard-2-of-3", "batch run --shard=2/3 --out=o m.yaml"},
		{[]string{"--shard", "2/3", "m.yaml"}, "out/m/shard-2-of-3", "batch run --shard=2/3 --out=out/m m.yaml"},
		{[]string{"--shard", "1/1", "m.yaml"}, "out/m", "batch run --shard=1/1 --out=out/m m.yaml"},
		{[]string{"--out", "o", "m.yaml"}, "o", "batch run --out=o m.yaml"},
		{[]string{"--only", "hero-*", "--only", "a b", "--sample", "4", "m.yaml"}, "out/m", "batch run --only='hero-*' --only='a b' --sample=4 --out=out/m m.yaml"},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var f runFlags
		f.register(fs)
		fs.StringVar(&f.out, "out", "", "")
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		if got := resumeCommand(fs, f.shard, tt.out); got != tt.want {
			t.Errorf("resumeCommand(%v, %s) = %q, want %q", tt.args, tt.out, got, tt.want)
		}
	}
}
