package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/sandbox"
	"github.com/batch-tool/batch/internal/sharedrate"
)

// writeSeedManifest writes a manifest of n SD 3.5 Flash jobs (one a seed)
// into dir and returns its path.
func writeSeedManifest(t testing.TB, dir, name string, n int) string {
	t.Helper()
	body := fmt.Sprintf("version: 1\nname: %s\nservice: generate/sd3\njobs:\n  - id: j\n    model: sd3.5-flash\n"+
		"    prompt: a lighthouse on a cliff\n    matrix:\n      seed: {from: 1, to: %d}\n", name, n)
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// childEnv is the environment of a batch child process: this one's with
// extra added, the shared rate-limit files where extra says
// (XDG_CACHE_HOME=… or BATCH_RATE_DIR=…) and never in the user's own cache
// folder.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, rateDirEnv+"=") && !strings.HasPrefix(kv, "XDG_CACHE_HOME=") &&
			!strings.HasPrefix(kv, "GITHUB_STEP_SUMMARY=") {
			env = append(env, kv)
		}
	}
	return append(append(env, "BATCH_TEST_MAIN=1"), extra...)
}

// runsTogether starts one `batch run` child per manifest and out folder at
// once, each with its own environment, and waits for all of them; it
// returns when the last one finished, from the start.
func runsTogether(t testing.TB, url, rate string, envs []string, manifests, outs []string) time.Duration {
	t.Helper()
	cmds := make([]*exec.Cmd, len(manifests))
	stderrs := make([]*bytes.Buffer, len(manifests))
	start := time.Now()
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "run", "--api-url", url, "--rate", rate, "--out", outs[i], manifests[i])
		cmds[i].Env = childEnv("STABILITY_API_KEY=sk-ratebench", envs[i])
		stderrs[i] = new(bytes.Buffer)
		cmds[i].Stderr = stderrs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("batch run %s: %v\n%s", manifests[i], err, stderrs[i])
		}
	}
	return time.Since(start)
}

// TestTwoRunsShareRate runs two `batch run` processes at once with the
// same key against a sandbox that allows 12 requests a second, each run
// limited to 10/1s: alone, each would send 9.8 a second, 19.6 together.
// Sharing one schedule, they send 9.8 a second between them and get no
// 429. (The sandbox's 2 requests of slack absorb this machine's scheduling
// delays, which bunch sends that were spaced apart; the bound itself is
// proven by runner's property test.) The control gives each run a
// schedule of its own, as before they were shared, and must get 429s, or
// the test would prove nothing.
func TestTwoRunsShareRate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes that run for seconds")
	}
	if raceEnabled {
		// Its processes pace in real time; the race detector's pass over
		// the shared schedule is internal/sharedrate's and the limiter's.
		t.Skip("paced in real time; skipped under the race detector")
	}
	dir := t.TempDir()
	m := writeSeedManifest(t, dir, "twenty", 20)
	shared := "XDG_CACHE_HOME=" + filepath.Join(dir, "cache")
	tests := []struct {
		name     string
		envs     []string
		want429s bool
	}{
		{"shared", []string{shared, shared}, false},
		{"separate", []string{rateDirEnv + "=" + filepath.Join(dir, "a"), rateDirEnv + "=" + filepath.Join(dir, "b")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb, err := sandbox.New(sandbox.Config{RateLimit: 12, RateWindow: time.Second, Lockout: time.Second, RetryAfter: true})
			if err != nil {
				t.Fatal(err)
			}
			url := startSandboxWith(t, sb)
			outs := []string{filepath.Join(dir, tt.name, "a"), filepath.Join(dir, tt.name, "b")}
			runsTogether(t, url, "10/1s", tt.envs, []string{m, m}, outs)
			st := sb.Stats()
			if got := st.RateLimited > 0; got != tt.want429s {
				t.Errorf("%d requests answered 429, want some: %v (stats %+v)", st.RateLimited, tt.want429s, st)
			}
			for _, out := range outs {
				rep, err := report.ReadRun(out)
				if err != nil {
					t.Fatal(err)
				}
				if rep.Totals.Succeeded != 20 {
					t.Errorf("%s: %d of 20 jobs succeeded", out, rep.Totals.Succeeded)
				}
			}
		})
	}
	// The file is named for a hash of the key, and holds no key.
	data, err := os.ReadFile(filepath.Join(dir, "cache", "batch", "rate", sharedrate.Name("sk-ratebench")))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("ratebench")) {
		t.Errorf("the rate file holds the key: %q", data)
	}
}

// sandboxProcess is `batch sandbox` running as a child process, with -v:
// it counts the requests answered 429 from its log.
type sandboxProcess struct {
	cmd      *exec.Cmd
	url      string
	rejected int64         // requests answered 429; read after done is closed
	done     chan struct{} // closed when the log ends: the process exited
}

// startSandboxProcess starts `batch sandbox` on a free loopback port with
// args added; it is killed when b ends if stop was not called.
func startSandboxProcess(b *testing.B, args ...string) *sandboxProcess {
	b.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"sandbox", "--addr", "127.0.0.1:0", "-v"}, args...)...)
	cmd.Env = childEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill() })
	sp := &sandboxProcess{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(sp.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "batch: sandbox API on "); ok {
				addr <- strings.Fields(rest)[0]
			}
			if strings.Contains(line, " status=429") {
				sp.rejected++
			}
		}
	}()
	select {
	case sp.url = <-addr:
	case <-sp.done:
		b.Fatal("the sandbox exited before it listened")
	}
	return sp
}

// stop stops the sandbox and returns how many requests it answered 429.
func (sp *sandboxProcess) stop(b *testing.B) int64 {
	b.Helper()
	if err := sp.cmd.Process.Signal(os.Interrupt); err != nil {
		b.Fatal(err)
	}
	<-sp.done
	_ = sp.cmd.Wait() // an interrupted sandbox exits 130
	return sp.rejected
}

// BenchmarkTwoRunsShareRate measures the shared rate limit: against a
// `batch sandbox` process allowing 150 requests in any 2 s (locking a key
// out for 60 s when exceeded, as the API does), it times one `batch run`
// process of 600 jobs, then two of 300 jobs started together with the same
// key and cache folder (each against a new sandbox), and reports the 429s
// each answered and the ratio of the pair's time (until both are done) to
// the single run's. The "separate" case gives each of the pair a rate file
// of its own, as runs were before the limit was shared.
//
//	go test -run '^$' -bench TwoRunsShareRate -benchtime 1x ./cmd/batch
func BenchmarkTwoRunsShareRate(b *testing.B) {
	for _, shared := range []bool{true, false} {
		name := map[bool]string{true: "shared", false: "separate"}[shared]
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			one, half := writeSeedManifest(b, dir, "six-hundred", 600), writeSeedManifest(b, dir, "three-hundred", 300)
			cache := "XDG_CACHE_HOME=" + filepath.Join(dir, "cache")
			pair := []string{cache, cache}
			if !shared {
				pair = []string{rateDirEnv + "=" + filepath.Join(dir, "a"), rateDirEnv + "=" + filepath.Join(dir, "b")}
			}
			phase := func(envs, manifests, outs []string) (time.Duration, int64) {
				sp := startSandboxProcess(b, "--rate-limit", "150", "--rate-window", "2s")
				d := runsTogether(b, sp.url, "150/2s", envs, manifests, outs)
				return d, sp.stop(b)
			}
			var single, both time.Duration
			var single429, both429 int64
			for i := 0; b.Loop(); i++ {
				out := func(s string) string { return filepath.Join(dir, fmt.Sprintf("%s-%d", s, i)) }
				d1, r1 := phase([]string{cache}, []string{one}, []string{out("one")})
				d2, r2 := phase(pair, []string{half, half}, []string{out("a"), out("b")})
				single, both, single429, both429 = single+d1, both+d2, single429+r1, both429+r2
			}
			n := float64(b.N)
			b.ReportMetric(float64(single429)/n, "429s/600-job-run")
			b.ReportMetric(float64(both429)/n, "429s/two-300-job-runs")
			b.ReportMetric(single.Seconds()/n, "s/600-job-run")
			b.ReportMetric(both.Seconds()/n, "s/two-300-job-runs")
			b.ReportMetric(both.Seconds()/single.Seconds(), "ratio")
		})
	}
}
