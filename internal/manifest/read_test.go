package manifest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLoadRefusesWhatIsNotAFile: a named pipe, a directory, a socket and a
// device are refused by their type before anything is opened (a named pipe
// would block the load forever), and a file over MaxFileSize by its size
// before anything is read.
func TestLoadRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	sock := filepath.Join(dir, "s.yaml")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen on a unix socket: %v", err)
	}
	defer ln.Close()
	folder := filepath.Join(dir, "folder.yaml")
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	// A sparse file: its size is past the limit, its disk use nothing.
	huge := filepath.Join(dir, "huge.yaml")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink("fifo.yaml", link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{fifo, fifo + " is a named pipe, not a file"},
		{link, link + " is a named pipe, not a file"},
		{folder, folder + " is a directory, not a file"},
		{sock, sock + " is a socket, not a file"},
		{"/dev/null", "/dev/null is a device, not a file"},
		{huge, huge + " is 512.1 MiB, over the limit of 512.0 MiB"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			m, err := Load(t.Context(), tt.path)
			ie, ok := errors.AsType[*InputError](err)
			if !ok {
				t.Fatalf("Load(%s) = %v, %v; want an *InputError", tt.path, m, err)
			}
			if ie.Error() != tt.want {
				t.Errorf("Load(%s) error = %q, want %q", tt.path, ie.Error(), tt.want)
			}
		})
	}
}

// TestReadFileLimit: a file just at the limit is read whole; one byte more
// is refused.
func TestReadFileLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(path, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(t.Context(), path, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("ReadFile(limit 10) = %q, %v; want the 10 bytes", b, err)
	}
	if _, err := ReadFile(t.Context(), path, 9); !errors.As(err, new(*InputError)) {
		t.Errorf("ReadFile(limit 9) error = %v, want an *InputError", err)
	}
	if _, err := ReadFile(t.Context(), filepath.Join(t.TempDir(), "missing.yaml"), 10); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile(missing) error = %v, want one matching os.ErrNotExist", err)
	}
}

func TestCheckText(t *testing.T) {
	tests := []struct {
		name, data string
		line, col  int // 0: valid
		msg        string
	}{
		{"ascii", "a: 1\nb: 2\n", 0, 0, ""},
		{"utf-8", "a: “ü” ✓ 🦊\n", 0, 0, ""},
		{"tab, CR, LF and NEL", "a:\t1\r\nb: \u0085\n", 0, 0, ""},
		{"byte order mark", "\ufeffa: 1\n", 0, 0, ""},
		{"UTF-16 is the decoder's", "\xff\xfea\x00", 0, 0, ""},
		{"bad byte on line 3", "a: 1\nb: 2\nc: é\xff\n", 3, 5, "byte 0xff is not UTF-8; save the file as UTF-8"},
		{"latin-1", "name: caf\xe9\n", 1, 10, "byte 0xe9 is not UTF-8; save the file as UTF-8"},
		{"surrogate", "a: \xed\xa0\x80\n", 1, 4, "byte 0xed is not UTF-8; save the file as UTF-8"},
		{"truncated sequence at the end", "a: \xe2\x9c", 1, 4, "byte 0xe2 is not UTF-8; save the file as UTF-8"},
		{"NUL", "a: 1\n\x00", 2, 1, "control character U+0000 is not allowed; remove it"},
		{"escape", "a: \x1b[31m\n", 1, 4, "control character U+001B is not allowed; remove it"},
		{"DEL", "a: x\x7f\n", 1, 5, "control character U+007F is not allowed; remove it"},
		{"C1 control", "a:\n  b: \u0090\n", 2, 6, "control character U+0090 is not allowed; remove it"},
		{"U+FFFE", "a: \ufffe\n", 1, 4, "control character U+FFFE is not allowed; remove it"},
		{"CR-only line ends", "a: 1\rb: 2\rc: \xff", 3, 4, "byte 0xff is not UTF-8; save the file as UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, col, msg, ok := CheckText([]byte(tt.data))
			if ok != (tt.line == 0) || line != tt.line || col != tt.col || msg != tt.msg {
				t.Errorf("CheckText(%q) = %d:%d %q %v, want %d:%d %q", tt.data, line, col, msg, ok, tt.line, tt.col, tt.msg)
			}
		})
	}
}

// TestLoadReportsEncodingAtItsLine: a byte that is not UTF-8 on line 3 is
// reported there (yaml.v3 alone says 1:1), as the only problem.
func TestLoadReportsEncodingAtItsLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latin1.yaml")
	src := "version: 1\nengine: stable-diffusion-xl-1024-v1-0\njobs:\n  - prompt: un caf\xe9 noir\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(t.Context(), path)
	want := path + ":4:19: byte 0xe9 is not UTF-8; save the file as UTF-8"
	if err == nil || err.Error() != want {
		t.Errorf("Load() error = %v, want %s", err, want)
	}
}

// TestLoadInterrupted: Load returns ctx's error, not a manifest or
// problems, once ctx is done: before it reads, and in the middle of a parse,
// which stops within a thousand jobs of the cancel instead of finishing.
func TestLoadInterrupted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nengine: stable-diffusion-xl-1024-v1-0\njobs:\n  - prompt: a fox\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if m, err := Load(ctx, path); !errors.Is(err, context.Canceled) {
		t.Errorf("Load(cancelled) = %v, %v; want context.Canceled", m, err)
	}

	const jobs = 5000
	var b strings.Builder
	b.WriteString("version: 1\nservice: upscale/fast\njobs:\n")
	for i := range jobs {
		fmt.Fprintf(&b, "  - image: in-%d.png\n", i)
	}
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	p := newParser(ctx, "m.yaml", t.TempDir(), MaxJobs)
	calls := 0
	p.statFile = func(string) *fileInfo {
		calls++
		if calls == 1 {
			cancel() // as a signal would, while the first jobs are read
		}
		return &fileInfo{w: 512, h: 512, size: 1 << 10}
	}
	m, err := p.run([]byte(b.String()))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("parse cancelled mid-way = %v, %v; want context.Canceled", m, err)
	}
	if calls > 1025 {
		t.Errorf("parse read %d of %d jobs' images after the cancel, want it to stop within 1024", calls, jobs)
	}

	// The same manifest, not cancelled, reads every image: the count above
	// is the cancel's doing.
	p = newParser(t.Context(), "m.yaml", t.TempDir(), MaxJobs)
	calls = 0
	p.statFile = func(string) *fileInfo { calls++; return &fileInfo{w: 512, h: 512, size: 1 << 10} }
	if _, err := p.run([]byte(b.String())); err != nil || calls != jobs {
		t.Errorf("parse = %v with %d image reads, want nil and %d", err, calls, jobs)
	}
}
