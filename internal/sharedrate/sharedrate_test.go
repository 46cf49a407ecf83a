package sharedrate

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// t0 is a fixed wall-clock time the tests take slots at.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestName(t *testing.T) {
	tests := []struct{ key, want string }{
		// A known answer: every version of batch must name the file alike,
		// or runs of two versions would not share the limit.
		{"sk-test-123", "c9193fe7bebd6d704b9d2855bf496e44"},
		{"sk-test-124", ""},
		{"", ""},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := Name(tt.key)
		if tt.want != "" && got != tt.want {
			t.Errorf("Name(%q) = %q, want %q", tt.key, got, tt.want)
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got) {
			t.Errorf("Name(%q) = %q, want 32 hex digits", tt.key, got)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("Name(%q) = Name(%q) = %q", tt.key, prev, got)
		}
		seen[got] = tt.key
	}
}

// open opens n Files on one path in a new folder below t's temp dir.
func open(t *testing.T, n int) (string, []*File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "batch", "rate", Name("sk-test"))
	files := make([]*File, n)
	for i := range files {
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		files[i] = f
	}
	return path, files
}

// step is one call on one of several Files sharing a path.
type step struct {
	file     int
	at       time.Duration // now, from t0
	take     time.Duration // Take's interval; 0: Pause instead
	pause    time.Duration
	want     time.Duration // Take's slot, or PausedUntil after Pause, from t0
	wantNone bool          // PausedUntil is not after now
}

func TestSchedule(t *testing.T) {
	const i = 100 * time.Millisecond
	tests := []struct {
		name  string
		steps []step
	}{
		{"the first slot is now", []step{{file: 0, take: i, want: 0}}},
		{"no burst: slots are an interval apart, whichever file takes them", []step{
			{file: 0, take: i, want: 0},
			{file: 1, take: i, want: i},
			{file: 0, take: i, want: 2 * i},
			{file: 2, at: 10 * time.Millisecond, take: i, want: 3 * i},
		}},
		{"after an idle spell, now again, and no burst after it", []step{
			{file: 0, take: i, want: 0},
			{file: 1, at: time.Hour, take: i, want: time.Hour},
			{file: 0, at: time.Hour, take: i, want: time.Hour + i},
		}},
		{"each taker's own interval spaces the next slot", []step{
			{file: 0, take: time.Second, want: 0},
			{file: 1, take: i, want: time.Second},
			{file: 0, take: time.Second, want: time.Second + i},
		}},
		{"a pause holds every file's slots", []step{
			{file: 0, take: i, want: 0},
			{file: 1, pause: time.Minute, want: time.Minute},
			{file: 2, at: time.Second, take: i, want: time.Minute},
			{file: 0, at: time.Second, take: i, want: time.Minute + i},
		}},
		{"a shorter pause does not shorten a longer one", []step{
			{file: 0, pause: time.Minute, want: time.Minute},
			{file: 1, at: time.Second, pause: 5 * time.Second, want: time.Minute},
			{file: 1, at: 2 * time.Second, take: i, want: time.Minute},
		}},
		{"a pause is over at its end", []step{
			{file: 0, pause: time.Minute, want: time.Minute},
			{file: 1, at: time.Minute, pause: 0, wantNone: true},
			{file: 1, at: time.Minute, take: i, want: time.Minute},
		}},
		{"a pause lasts at most MaxAhead", []step{
			{file: 0, pause: 24 * time.Hour, want: MaxAhead},
			{file: 1, take: i, want: MaxAhead},
		}},
		{"a slot far ahead from a clock set back is ignored", []step{
			{file: 0, at: 3 * time.Hour, take: i, want: 3 * time.Hour},
			{file: 1, at: time.Second, take: i, want: time.Second}, // the clock stepped back
		}},
		{"a slot 100 intervals ahead is kept when under MaxAhead", []step{
			{file: 0, take: 40 * time.Minute, want: 0},
			{file: 1, take: 40 * time.Minute, want: 40 * time.Minute},
			{file: 2, take: 40 * time.Minute, want: 80 * time.Minute},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, files := open(t, 3)
			for k, s := range tt.steps {
				now := t0.Add(s.at)
				var got time.Time
				var err error
				if s.take > 0 {
					got, err = files[s.file].Take(now, s.take)
				} else {
					if err = files[s.file].Pause(now, s.pause); err == nil {
						got, err = files[s.file].PausedUntil(now)
					}
				}
				switch {
				case err != nil:
					t.Fatalf("step %d: %v", k, err)
				case s.wantNone && got.After(now):
					t.Errorf("step %d: paused until %v, want no pause at %v", k, got.Sub(t0), s.at)
				case !s.wantNone && !got.Equal(t0.Add(s.want)):
					t.Errorf("step %d: got t0+%v, want t0+%v", k, got.Sub(t0), s.want)
				}
			}
		})
	}
}

// TestFileContent checks that the file holds one line of two times and
// nothing of the key, and that a damaged file or one of another format
// counts as empty and is rewritten.
func TestFileContent(t *testing.T) {
	for _, damage := range []string{"", "garbage", "batch-rate-1 12 34\n", strings.Repeat("9", 200)} {
		t.Run(fmt.Sprintf("%.12q", damage), func(t *testing.T) {
			path, files := open(t, 1)
			if err := os.WriteFile(path, []byte(damage), 0o600); err != nil {
				t.Fatal(err)
			}
			slot, err := files[0].Take(t0, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !slot.Equal(t0) {
				t.Errorf("Take on a file holding %q = t0+%v, want t0", damage, slot.Sub(t0))
			}
			if err := files[0].Pause(t0, time.Minute); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("batch-rate-1 %020d %020d\n", t0.Add(time.Second).UnixNano(), t0.Add(time.Minute).UnixNano())
			if string(data) != want {
				t.Errorf("file holds %q, want %q", data, want)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm&0o077 != 0 {
				t.Errorf("file mode %v, want no access for others", perm)
			}
		})
	}
}

func TestOpenError(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "batch")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := Open(filepath.Join(blocker, "rate", Name("k"))); err == nil {
		f.Close()
		t.Fatal("Open below a file succeeded")
	}
}

// TestAcrossProcesses has processes take slots at the same instant from
// one file, as runs started together would: the slots they get between
// them must be exactly t0, t0+i, t0+2i, … with none given twice and none
// skipped, which only a lock that excludes the other processes gives.
func TestAcrossProcesses(t *testing.T) {
	const procs, each, i = 4, 2000, time.Millisecond
	path, _ := open(t, 0)
	cmds := make([]*exec.Cmd, procs)
	outs := make([]*strings.Builder, procs)
	for p := range cmds {
		cmds[p] = exec.Command(os.Args[0], "-test.run=^TestHelperTakeSlots$")
		cmds[p].Env = append(os.Environ(), "SHAREDRATE_HELPER_PATH="+path, "SHAREDRATE_HELPER_TAKES="+strconv.Itoa(each))
		outs[p] = new(strings.Builder)
		cmds[p].Stdout, cmds[p].Stderr = outs[p], outs[p]
		if err := cmds[p].Start(); err != nil {
			t.Fatal(err)
		}
	}
	var slots []int64
	for p, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", p, err, outs[p])
		}
		sc := bufio.NewScanner(strings.NewReader(outs[p].String()))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "slot "); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				slots = append(slots, n)
			}
		}
	}
	if len(slots) != procs*each {
		t.Fatalf("%d slots from %d processes, want %d", len(slots), procs, procs*each)
	}
	slices.Sort(slots)
	for k, s := range slots {
		if want := t0.Add(time.Duration(k) * i).UnixNano(); s != want {
			t.Fatalf("slot %d is t0+%v, want t0+%v", k, time.Duration(s-t0.UnixNano()), time.Duration(k)*i)
		}
	}
}

// TestHelperTakeSlots is TestAcrossProcesses's child: it takes slots at
// t0 from the file and prints them.
func TestHelperTakeSlots(t *testing.T) {
	path := os.Getenv("SHAREDRATE_HELPER_PATH")
	if path == "" {
		t.Skip("run by TestAcrossProcesses")
	}
	n, err := strconv.Atoi(os.Getenv("SHAREDRATE_HELPER_TAKES"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(os.Stdout)
	for range n {
		slot, err := f.Take(t0, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "slot %d\n", slot.UnixNano())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}
