package outdir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// snapshot returns every path under dir with its mode and content, to show
// that a folder outside OUT was left untouched.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v", p, fi.Mode())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %q", data)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// outside returns a folder beside OUT holding one file, the target of the
// links the tests plant in OUT.
func outside(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious.txt"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range entries {
		ns = append(ns, e.Name())
	}
	return ns
}

func TestPrepareCreatesFolders(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a", "out")
	if err := Prepare(out, 1); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{out, filepath.Join(out, ImagesDir), filepath.Join(out, FilteredDir)} {
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want a folder", d, err)
		}
		if ns := names(t, d); d != out && len(ns) > 0 {
			t.Errorf("%s holds %v after Prepare, want nothing (the probe removed)", d, ns)
		}
	}
	if got, want := names(t, out), []string{FilteredDir, ImagesDir}; !slices.Equal(got, want) {
		t.Errorf("OUT holds %v, want %v", got, want)
	}
	// again, on a prepared folder
	if err := Prepare(out, 1); err != nil {
		t.Errorf("second Prepare: %v", err)
	}
}

// TestPrepareRefuses covers what Prepare must refuse before anything is
// bought: links where folders go, files where folders go, and a folder it
// cannot write. Each case leaves the folder the link points to untouched.
func TestPrepareRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, out, target string) string // returns the dir to prepare
		want  string                                        // in the error
		link  bool                                          // the error wraps ErrSymlink
	}{
		{"images is a link", func(t *testing.T, out, target string) string {
			mustSymlink(t, target, filepath.Join(out, ImagesDir))
			return out
		}, "images is a symbolic link", true},
		{"filtered is a link", func(t *testing.T, out, target string) string {
			mustSymlink(t, target, filepath.Join(out, FilteredDir))
			return out
		}, "filtered is a symbolic link", true},
		{"images is a dangling link", func(t *testing.T, out, target string) string {
			mustSymlink(t, filepath.Join(target, "missing"), filepath.Join(out, ImagesDir))
			return out
		}, "images is a symbolic link", true},
		{"images is a link inside OUT", func(t *testing.T, out, target string) string {
			mustMkdir(t, filepath.Join(out, "elsewhere"))
			mustSymlink(t, "elsewhere", filepath.Join(out, ImagesDir))
			return out
		}, "images is a symbolic link", true},
		{"OUT is a file", func(t *testing.T, out, target string) string {
			p := filepath.Join(out, "file")
			mustWrite(t, p, "x")
			return p
		}, "create output folder", false},
		{"images is a file", func(t *testing.T, out, target string) string {
			mustWrite(t, filepath.Join(out, ImagesDir), "x")
			return out
		}, "images is not a folder", false},
		{"filtered is a file", func(t *testing.T, out, target string) string {
			mustWrite(t, filepath.Join(out, FilteredDir), "x")
			return out
		}, "filtered is not a folder", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, target := t.TempDir(), outside(t)
			before := snapshot(t, target)
			dir := tt.setup(t, out, target)
			err := Prepare(dir, 1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Prepare = %v, want an error with %q", err, tt.want)
			}
			if errors.Is(err, ErrSymlink) != tt.link {
				t.Errorf("Prepare = %v: wraps ErrSymlink %v, want %v", err, !tt.link, tt.link)
			}
			if after := snapshot(t, target); after != before {
				t.Errorf("the link's target changed:\n%s\nwant\n%s", after, before)
			}
		})
	}
}

func TestPrepareReadOnly(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into a read-only folder; TestPrepareRefuses covers a file where a folder goes")
	}
	tests := []struct {
		name     string
		prepared bool // images/ and filtered/ exist already
		want     string
	}{
		{"fresh", false, "create output folder"},
		{"prepared", true, "is not writable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			if tt.prepared {
				if err := Prepare(out, 0); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(out, 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(out, 0o755) })
			err := Prepare(out, 0)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, fs.ErrPermission) {
				t.Errorf("Prepare(read-only) = %v, want %q and a permission error", err, tt.want)
			}
		})
	}
}

func TestPrepareFreeSpace(t *testing.T) {
	tests := []struct {
		name    string
		free    int64
		freeErr error
		need    int64
		want    string // "" for no error
		noSpace bool
	}{
		{"fits", 10 << 20, nil, 10 << 20, "", false},
		{"1 KiB free", 1 << 10, nil, ExpectedBytes(1024, 1024, "png"), "1.0 KiB free, the images still to make need about 3.1 MiB", true},
		{"one byte short", 99, nil, 100, "99 bytes free", true},
		{"nothing to write", 0, nil, 0, "", false},
		{"unsupported", 0, fmt.Errorf("statfs: %w", errors.ErrUnsupported), 1 << 40, "", false},
		{"statfs fails", 0, errors.New("statfs broke"), 1, "statfs broke", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			var asked []string
			p := Preparer{FreeBytes: func(dir string) (int64, error) {
				asked = append(asked, dir)
				return tt.free, tt.freeErr
			}}
			err := p.Prepare(out, tt.need)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Prepare = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Prepare = %v, want an error with %q", err, tt.want)
			case errors.Is(err, ErrNoSpace) != tt.noSpace:
				t.Errorf("Prepare = %v: wraps ErrNoSpace %v, want %v", err, !tt.noSpace, tt.noSpace)
			}
			if want := filepath.Join(out, ImagesDir); tt.need > 0 && !slices.Equal(asked, []string{want}) {
				t.Errorf("free space asked of %q, want [%s]", asked, want)
			}
			if tt.need == 0 && len(asked) > 0 {
				t.Errorf("free space asked of %q with nothing to write", asked)
			}
		})
	}
}

func TestFreeBytes(t *testing.T) {
	n, err := FreeBytes(t.TempDir())
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil || n <= 0 {
		t.Errorf("FreeBytes(temp folder) = %d, %v; want > 0", n, err)
	}
	if _, err := FreeBytes(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Errorf("FreeBytes(missing folder) = nil error")
	}
}

func TestExpectedBytes(t *testing.T) {
	tests := []struct {
		w, h   int
		format string
		want   int64
	}{
		{1024, 1024, "png", 3*1024*1024 + 1024 + 64<<10},
		{1024, 1024, "webp", 3*1024*1024 + 1024 + 64<<10},
		{1024, 1024, "jpeg", 1024*1024 + 64<<10},
		{1536, 640, "png", 3*1536*640 + 640 + 64<<10},
		{0, 0, "png", 3*2048*2048 + 2048 + 64<<10},
		{512, 0, "jpeg", 2048*2048 + 64<<10},
		{1, 1, "tiff", 3 + 1 + 64<<10},
	}
	for _, tt := range tests {
		if got := ExpectedBytes(tt.w, tt.h, tt.format); got != tt.want {
			t.Errorf("ExpectedBytes(%d, %d, %q) = %d, want %d", tt.w, tt.h, tt.format, got, tt.want)
		}
	}
}

func TestBytesText(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 bytes"}, {1023, "1023 bytes"}, {1024, "1.0 KiB"}, {3<<20 + 512<<10, "3.5 MiB"}, {5 << 40, "5.0 TiB"},
	}
	for _, tt := range tests {
		if got := bytesText(tt.n); got != tt.want {
			t.Errorf("bytesText(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestTempNames(t *testing.T) {
	name := tempName("cats-1.png", os.Getpid())
	if pid, ok := tempPID(name); !ok || pid != os.Getpid() || !strings.HasPrefix(name, ".cats-1.png.tmp-") {
		t.Errorf("tempPID(tempName(cats-1.png) = %q) = %d, %v; want %d, true", name, pid, ok, os.Getpid())
	}
	if a, b := tempName("x", 1), tempName("x", 1); a == b {
		t.Errorf("tempName gave %q twice", a)
	}
	tests := []struct {
		name string
		pid  int
		ok   bool
	}{
		{".cats.png.tmp-1234-0123456789abcdef", 1234, true},
		{".report.json.tmp-1-ffffffffffffffff", 1, true},
		{".a.tmp-b.png.tmp-77-0000000000000000", 77, true},
		{"cats.png.tmp-1234-0123456789abcdef", 0, false},  // not hidden
		{".cats.png.tmp123456789", 0, false},              // os.CreateTemp's style: not ours
		{".cats.png.tmp-1234-0123456789abcde", 0, false},  // short random
		{".cats.png.tmp-1234-0123456789ABCDEF", 0, false}, // upper case
		{".cats.png.tmp--1-0123456789abcdef", 0, false},
		{".cats.png.tmp-+1-0123456789abcdef", 0, false},
		{".cats.png.tmp-0-0123456789abcdef", 0, false},
		{".cats.png.tmp--0123456789abcdef", 0, false},
		{".tmp-1-0123456789abcdef", 0, false},
		{".batch.lock", 0, false},
		{"cats.png", 0, false},
	}
	for _, tt := range tests {
		if pid, ok := tempPID(tt.name); pid != tt.pid || ok != tt.ok {
			t.Errorf("tempPID(%q) = %d, %v; want %d, %v", tt.name, pid, ok, tt.pid, tt.ok)
		}
	}
}

// TestDirRefusesLinks plants links where an output folder's files and
// folders go: nothing is written, replaced or removed outside OUT.
func TestDirRefusesLinks(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, out, target string)
		do    func(d *Dir) error
		want  string // in the error; "" when the link itself is replaced
		check func(t *testing.T, out string)
	}{
		{"journal is a link", func(t *testing.T, out, target string) {
			mustSymlink(t, filepath.Join(target, "precious.txt"), filepath.Join(out, "journal.jsonl"))
		}, func(d *Dir) error {
			f, err := d.OpenFile("journal.jsonl", os.O_RDWR|os.O_CREATE)
			if err == nil {
				f.Truncate(0)
				f.Close()
			}
			return err
		}, "journal.jsonl is a symbolic link", nil},
		{"journal is a dangling link", func(t *testing.T, out, target string) {
			mustSymlink(t, filepath.Join(target, "new.txt"), filepath.Join(out, "journal.jsonl"))
		}, func(d *Dir) error {
			f, err := d.OpenFile("journal.jsonl", os.O_RDWR|os.O_CREATE)
			if err == nil {
				f.Close()
			}
			return err
		}, "journal.jsonl is a symbolic link", nil},
		{"journal is a folder", func(t *testing.T, out, target string) {
			mustMkdir(t, filepath.Join(out, "journal.jsonl"))
		}, func(d *Dir) error {
			_, err := d.OpenFile("journal.jsonl", os.O_RDWR|os.O_CREATE)
			return err
		}, "journal.jsonl is not a regular file", nil},
		{"report is a link: replaced", func(t *testing.T, out, target string) {
			mustSymlink(t, filepath.Join(target, "precious.txt"), filepath.Join(out, "report.json"))
		}, func(d *Dir) error {
			return d.WriteFileAtomic("report.json", []byte("{}\n"))
		}, "", func(t *testing.T, out string) {
			fi, err := os.Lstat(filepath.Join(out, "report.json"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Errorf("report.json after WriteFileAtomic: %v, %v; want a regular file", fi, err)
			}
		}},
		{"temp file in a linked folder", func(t *testing.T, out, target string) {
			mustSymlink(t, target, filepath.Join(out, ImagesDir))
		}, func(d *Dir) error {
			f, _, err := d.CreateTemp("images/cats.png")
			if err == nil {
				f.Close()
			}
			return err
		}, "images is a symbolic link", nil},
		{"rename into a linked folder", func(t *testing.T, out, target string) {
			mustMkdir(t, filepath.Join(out, ImagesDir))
			mustWrite(t, filepath.Join(out, ImagesDir, ".cats.png.tmp-1-0123456789abcdef"), "png")
			mustSymlink(t, target, filepath.Join(out, FilteredDir))
		}, func(d *Dir) error {
			return d.Rename("images/.cats.png.tmp-1-0123456789abcdef", "filtered/precious.txt")
		}, "filtered is a symbolic link", nil},
		{"rename over a link: replaced", func(t *testing.T, out, target string) {
			mustMkdir(t, filepath.Join(out, ImagesDir))
			mustWrite(t, filepath.Join(out, ImagesDir, ".cats.png.tmp-1-0123456789abcdef"), "png")
			mustSymlink(t, filepath.Join(target, "precious.txt"), filepath.Join(out, ImagesDir, "cats.png"))
		}, func(d *Dir) error {
			return d.Rename("images/.cats.png.tmp-1-0123456789abcdef", "images/cats.png")
		}, "", func(t *testing.T, out string) {
			if data, err := os.ReadFile(filepath.Join(out, ImagesDir, "cats.png")); err != nil || string(data) != "png" {
				t.Errorf("images/cats.png = %q, %v; want the renamed file", data, err)
			}
		}},
		{"remove in a linked folder", func(t *testing.T, out, target string) {
			mustSymlink(t, target, filepath.Join(out, ImagesDir))
		}, func(d *Dir) error {
			return d.Remove("images/precious.txt")
		}, "images is a symbolic link", nil},
		{"remove a link", func(t *testing.T, out, target string) {
			mustSymlink(t, filepath.Join(target, "precious.txt"), filepath.Join(out, "link"))
		}, func(d *Dir) error {
			return d.Remove("link")
		}, "", func(t *testing.T, out string) {
			if _, err := os.Lstat(filepath.Join(out, "link")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("link after Remove: %v, want gone", err)
			}
		}},
		{"sub of a linked folder", func(t *testing.T, out, target string) {
			mustSymlink(t, target, filepath.Join(out, ImagesDir))
		}, func(d *Dir) error {
			sub, err := d.Sub(ImagesDir)
			if err == nil {
				sub.Close()
			}
			return err
		}, "images is a symbolic link", nil},
		{"sub refuses a link inside it", func(t *testing.T, out, target string) {
			mustMkdir(t, filepath.Join(out, ImagesDir))
			mustSymlink(t, target, filepath.Join(out, ImagesDir, "deeper"))
		}, func(d *Dir) error {
			sub, err := d.Sub(ImagesDir)
			if err != nil {
				return err
			}
			defer sub.Close()
			f, _, err := sub.CreateTemp("deeper/cats.png")
			if err == nil {
				f.Close()
			}
			return err
		}, "images/deeper is a symbolic link", nil},
		{"sub replaces a link at a file's name", func(t *testing.T, out, target string) {
			mustMkdir(t, filepath.Join(out, ImagesDir))
			mustSymlink(t, filepath.Join(target, "precious.txt"), filepath.Join(out, ImagesDir, "cats.png.batch.json"))
		}, func(d *Dir) error {
			sub, err := d.Sub(ImagesDir)
			if err != nil {
				return err
			}
			defer sub.Close()
			if err := sub.ReplaceFile("cats.png.batch.json", []byte("{}\n")); err != nil {
				return err
			}
			return sub.SyncFolder(".")
		}, "", func(t *testing.T, out string) {
			if data, err := os.ReadFile(filepath.Join(out, ImagesDir, "cats.png.batch.json")); err != nil || string(data) != "{}\n" {
				t.Errorf("images/cats.png.batch.json = %q, %v; want the file ReplaceFile wrote", data, err)
			}
		}},
		{"put over a link: replaced", func(t *testing.T, out, target string) {
			mustSymlink(t, filepath.Join(target, "precious.txt"), filepath.Join(out, "cats.png.batch.json"))
		}, func(d *Dir) error {
			return d.PutFile("cats.png.batch.json", []byte("{}\n"))
		}, "", func(t *testing.T, out string) {
			fi, err := os.Lstat(filepath.Join(out, "cats.png.batch.json"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Errorf("cats.png.batch.json after PutFile: %v, %v; want a regular file", fi, err)
			}
		}},
		{"put in a linked folder", func(t *testing.T, out, target string) {
			mustSymlink(t, target, filepath.Join(out, ImagesDir))
		}, func(d *Dir) error {
			return d.PutFile("images/cats.png.batch.json", []byte("{}\n"))
		}, "images is a symbolic link", nil},
		{"sync a linked folder", func(t *testing.T, out, target string) {
			mustSymlink(t, target, filepath.Join(out, FilteredDir))
		}, func(d *Dir) error {
			return d.SyncFolder(FilteredDir)
		}, "filtered is a symbolic link", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, target := t.TempDir(), outside(t)
			tt.plant(t, out, target)
			before := snapshot(t, target)
			d, err := OpenDir(out)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			err = tt.do(d)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("err = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want one with %q", err, tt.want)
			case tt.want != "" && strings.Contains(tt.want, "symbolic") && !errors.Is(err, ErrSymlink):
				t.Errorf("err = %v, want it to wrap ErrSymlink", err)
			}
			if err != nil && !strings.Contains(err.Error(), out) {
				t.Errorf("err = %v, want it to name the path in %s", err, out)
			}
			if after := snapshot(t, target); after != before {
				t.Errorf("the link's target changed:\n%s\nwant\n%s", after, before)
			}
			if tt.check != nil {
				tt.check(t, out)
			}
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	out := t.TempDir()
	name := filepath.Join(out, "report.json")
	for _, data := range []string{"first\n", "second\n"} {
		if err := WriteFileAtomic(name, []byte(data)); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(name); err != nil || string(got) != data {
			t.Errorf("after WriteFileAtomic(%q): %q, %v", data, got, err)
		}
	}
	// a folder in the way: the rename fails and the temp file goes
	mustMkdir(t, filepath.Join(out, "busy"))
	mustWrite(t, filepath.Join(out, "busy", "f"), "x")
	if err := WriteFileAtomic(filepath.Join(out, "busy"), []byte("x")); err == nil {
		t.Errorf("WriteFileAtomic over a folder = nil error")
	}
	if got, want := names(t, out), []string{"busy", "report.json"}; !slices.Equal(got, want) {
		t.Errorf("OUT holds %v, want %v (no temp file)", got, want)
	}
	if err := WriteFileAtomic(filepath.Join(out, "missing", "r.json"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFileAtomic into a missing folder = %v, want fs.ErrNotExist", err)
	}
}

// TestPutFile: a new file is created in place, an existing one replaced
// whole; either way no temp file is left.
func TestPutFile(t *testing.T) {
	out := t.TempDir()
	d, err := OpenDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, data := range []string{"first\n", "second, longer\n", "third\n"} {
		if err := d.PutFile("record.json", []byte(data)); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(out, "record.json")); err != nil || string(got) != data {
			t.Errorf("after PutFile(%q): %q, %v", data, got, err)
		}
	}
	if got, want := names(t, out), []string{"record.json"}; !slices.Equal(got, want) {
		t.Errorf("OUT holds %v, want %v (no temp file)", got, want)
	}
}

func TestReadFile(t *testing.T) {
	out, target := t.TempDir(), outside(t)
	mustWrite(t, filepath.Join(out, "journal.jsonl"), "line\n")
	mustSymlink(t, filepath.Join(target, "precious.txt"), filepath.Join(out, "link.jsonl"))
	if data, err := ReadFile(filepath.Join(out, "journal.jsonl")); err != nil || string(data) != "line\n" {
		t.Errorf("ReadFile = %q, %v", data, err)
	}
	if _, err := ReadFile(filepath.Join(out, "link.jsonl")); !errors.Is(err, ErrSymlink) {
		t.Errorf("ReadFile(link) = %v, want ErrSymlink", err)
	}
	for _, p := range []string{filepath.Join(out, "missing"), filepath.Join(out, "no", "journal.jsonl")} {
		if _, err := ReadFile(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(%s) = %v, want fs.ErrNotExist", p, err)
		}
	}
}

// TestLockTwice takes the lock from two goroutines, each with its own open
// file: the second is refused with the first's pid, host and start time.
func TestLockTwice(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out") // Lock creates it
	type got struct {
		l   *Held
		err error
	}
	lock := func() got {
		c := make(chan got)
		go func() {
			l, err := Lock(out)
			c <- got{l, err}
		}()
		return <-c
	}
	first := lock()
	if first.err != nil {
		t.Fatal(first.err)
	}
	second := lock()
	if second.err == nil {
		second.l.Unlock()
		t.Fatal("second Lock = nil error")
	}
	if !errors.Is(second.err, ErrLocked) {
		t.Errorf("second Lock = %v, want ErrLocked", second.err)
	}
	data, err := os.ReadFile(filepath.Join(out, LockFile))
	if err != nil {
		t.Fatal(err)
	}
	var h holder
	if err := json.Unmarshal(data, &h); err != nil || h.PID != os.Getpid() || h.Host == "" || h.Started.IsZero() {
		t.Fatalf("lock file = %q (%v), want this process's record", data, err)
	}
	want := fmt.Sprintf("%s is in use by batch pid %d on %s, running since %s", out, os.Getpid(), h.Host,
		h.Started.Format("2006-01-02 15:04:05 UTC"))
	if !strings.HasSuffix(second.err.Error(), want) {
		t.Errorf("second Lock = %q, want it to end %q", second.err, want)
	}
	if err := first.l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := first.l.Unlock(); err != nil {
		t.Errorf("second Unlock = %v, want nil", err)
	}
	third := lock()
	if third.err != nil {
		t.Fatalf("Lock after Unlock = %v", third.err)
	}
	third.l.Unlock()
}

func TestLockedErrorWithoutRecord(t *testing.T) {
	for _, content := range []string{"", "{\"pid\":", "garbage", `{"pid":0}`} {
		f := mustCreate(t, filepath.Join(t.TempDir(), LockFile), content)
		err := lockedError("out", f)
		if !errors.Is(err, ErrLocked) || !strings.HasSuffix(err.Error(), "out is in use by another batch run") {
			t.Errorf("lockedError(%q) = %v, want the unknown holder", content, err)
		}
	}
}

func TestLockRefusesLinkedLockFile(t *testing.T) {
	out, target := t.TempDir(), outside(t)
	mustSymlink(t, filepath.Join(target, "precious.txt"), filepath.Join(out, LockFile))
	before := snapshot(t, target)
	if l, err := Lock(out); !errors.Is(err, ErrSymlink) {
		l.Unlock()
		t.Errorf("Lock with a linked lock file = %v, want ErrSymlink", err)
	}
	if after := snapshot(t, target); after != before {
		t.Errorf("the link's target changed:\n%s\nwant\n%s", after, before)
	}
}

func mustSymlink(t *testing.T, oldname, newname string) {
	t.Helper()
	if err := os.Symlink(oldname, newname); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(t *testing.T, name, data string) *os.File {
	t.Helper()
	mustWrite(t, name, data)
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
