package runner

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/outdir"
	"github.com/batch-tool/batch/internal/stability"
)

// apiServer is a loopback stand-in for the image API: v1 text-to-image
// and the Stable Image services. answer decides each request's fate from
// the prompt and how many times that prompt was seen (1-based); nil means
// a normal answer.
type apiServer struct {
	*httptest.Server
	mu     sync.Mutex
	seen   map[string]int
	forms  map[string]url.Values                                  // Stable Image form values, by prompt, of the last request
	answer func(w http.ResponseWriter, prompt string, n int) bool // true: answered
	delay  time.Duration
	finish string // Finish-Reason for normal answers; "" = SUCCESS
}

// newAPIServer starts a server; delay and finish are fixed before it
// serves, since requests may come from another process.
func newAPIServer(t testing.TB, answer func(w http.ResponseWriter, prompt string, n int) bool, delay time.Duration, finish string) *apiServer {
	s := &apiServer{seen: map[string]int{}, forms: map[string]url.Values{}, answer: answer, delay: delay, finish: finish}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) handle(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v2beta/stable-image/") {
		s.handleStable(w, r)
		return
	}
	var req stability.TextToImageRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.TextPrompts) == 0 {
		writeError(w, 400, "bad_request", "bad body")
		return
	}
	prompt := req.TextPrompts[0].Text
	s.mu.Lock()
	s.seen[prompt]++
	n := s.seen[prompt]
	s.mu.Unlock()
	if s.answer != nil && s.answer(w, prompt, n) {
		return
	}
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	finish := s.finish
	if finish == "" {
		finish = stability.FinishSuccess
	}
	if req.Samples <= 1 {
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Seed", strconv.Itoa(int(req.Seed)+7))
		w.Header().Set("Finish-Reason", finish)
		w.Write(tinyPNG())
		return
	}
	type art struct {
		Base64       string `json:"base64"`
		FinishReason string `json:"finishReason"`
		Seed         uint32 `json:"seed"`
	}
	var body struct {
		Artifacts []art `json:"artifacts"`
	}
	for i := range req.Samples {
		body.Artifacts = append(body.Artifacts, art{base64.StdEncoding.EncodeToString(tinyPNG()), finish, req.Seed + uint32(i)})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

// handleStable answers a Stable Image request: the image in the asked
// output_format with finish-reason, seed and x-request-id headers.
func (s *apiServer) handleStable(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(1 << 20); err != nil || r.FormValue("prompt") == "" {
		writeStableError(w, 400, "bad_request", "prompt: is required")
		return
	}
	prompt := r.FormValue("prompt")
	s.mu.Lock()
	s.seen[prompt]++
	n := s.seen[prompt]
	s.forms[prompt] = r.MultipartForm.Value
	s.mu.Unlock()
	if s.answer != nil && s.answer(w, prompt, n) {
		return
	}
	format := cmp.Or(r.FormValue("output_format"), "png")
	finish := cmp.Or(s.finish, stability.FinishSuccess)
	w.Header().Set("Content-Type", "image/"+format)
	w.Header().Set("Finish-Reason", finish)
	w.Header().Set("Seed", cmp.Or(r.FormValue("seed"), "77"))
	w.Header().Set("X-Request-Id", fmt.Sprintf("req%d", n))
	w.Write(imageBytes(format))
}

// form returns the form values of the last Stable Image request with a prompt.
func (s *apiServer) form(prompt string) url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forms[prompt]
}

func (s *apiServer) requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.seen))
	for k, v := range s.seen {
		m[k] = v
	}
	return m
}

func writeError(w http.ResponseWriter, status int, name, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"id":"0000","name":%q,"message":%q}`, name, msg)
}

// writeStableError writes a Stable Image error body: {id, name, errors}.
func writeStableError(w http.ResponseWriter, status int, name, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"id":"e0e0","name":%q,"errors":[%q]}`, name, msg)
}

func newClient(t testing.TB, url string) *stability.Client {
	c, err := stability.NewClient(stability.Options{BaseURL: url, APIKey: "sk-test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWire(t *testing.T) {
	hijack := func(w http.ResponseWriter) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	tests := []struct {
		name     string
		answer   func(w http.ResponseWriter, prompt string, n int) bool
		finish   string
		status   Status
		attempts int
		credits  cost.Credits
		unknown  cost.Credits
		fatal    error
		dir      string
	}{
		{"429 then success", func(w http.ResponseWriter, _ string, n int) bool {
			if n == 1 {
				writeError(w, 429, "rate_limit_exceeded", "You have exceeded the rate limit")
				return true
			}
			return false
		}, "", Succeeded, 2, cost.Credit, 0, nil, ImagesDir},
		{"500 then success", func(w http.ResponseWriter, _ string, n int) bool {
			if n == 1 {
				writeError(w, 500, "server_error", "An unexpected server error occurred")
				return true
			}
			return false
		}, "", Succeeded, 2, cost.Credit, 0, nil, ImagesDir},
		{"dropped connection then success", func(w http.ResponseWriter, _ string, n int) bool {
			if n == 1 {
				hijack(w)
				return true
			}
			return false
		}, "", Succeeded, 2, cost.Credit, cost.Credit, nil, ImagesDir},
		{"400", func(w http.ResponseWriter, _ string, n int) bool {
			writeError(w, 400, "invalid_sdxl_v1_dimensions", "bad size")
			return true
		}, "", Failed, 1, 0, 0, nil, ""},
		{"401", func(w http.ResponseWriter, _ string, n int) bool {
			writeError(w, 401, "unauthorized", "missing authorization header")
			return true
		}, "", Failed, 1, 0, 0, ErrUnauthorized, ""},
		{"filtered", nil, stability.FinishContentFiltered, Filtered, 1, cost.Credit, 0, nil, FilteredDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newAPIServer(t, tt.answer, 0, tt.finish)
			jobs, prices := testJobs(1)
			cfg := fastConfig(t)
			cfg.Lockout = 20 * time.Millisecond
			res, err := runJobs(t.Context(), cfg, newClient(t, srv.URL), jobs, prices)
			if !errors.Is(err, tt.fatal) || (tt.fatal == nil) != (err == nil) {
				t.Fatalf("Run error = %v, want %v", err, tt.fatal)
			}
			r := res.Jobs[0]
			if r.Status != tt.status || r.Attempts != tt.attempts || r.Credits != tt.credits || r.Unknown != tt.unknown {
				t.Errorf("job = %s, %d attempts, credits %v, unknown %v; want %s, %d, %v, %v (error %q)",
					r.Status, r.Attempts, r.Credits, r.Unknown, tt.status, tt.attempts, tt.credits, tt.unknown, r.Error)
			}
			if got := srv.requests()["a cat number 0"]; got != tt.attempts {
				t.Errorf("server got %d requests, want %d", got, tt.attempts)
			}
			if tt.dir != "" {
				if len(r.Images) != 1 || !strings.HasPrefix(r.Images[0].Path, tt.dir+"/") {
					t.Fatalf("images = %+v, want one under %s/", r.Images, tt.dir)
				}
				checkImage(t, cfg.OutDir, r.Images[0])
			}
			if left := tempFiles(t, cfg.OutDir); len(left) > 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

// TestWireStableImage runs Stable Image jobs through the real client
// against a loopback server: each answer class ends the job as it should,
// and the files follow output_format.
func TestWireStableImage(t *testing.T) {
	failFirst := func(status int, name string) func(w http.ResponseWriter, _ string, n int) bool {
		return func(w http.ResponseWriter, _ string, n int) bool {
			if n == 1 {
				writeStableError(w, status, name, "the error's message")
				return true
			}
			return false
		}
	}
	always := func(status int, name string) func(w http.ResponseWriter, _ string, n int) bool {
		return func(w http.ResponseWriter, _ string, n int) bool {
			writeStableError(w, status, name, "the error's message")
			return true
		}
	}
	tests := []struct {
		name     string
		job      manifest.Job
		answer   func(w http.ResponseWriter, prompt string, n int) bool
		status   Status
		failure  Failure
		attempts int
		fatal    error
		path     string // the image written; "" for none
	}{
		{"core png", stableJob("core", "generate/core", 1536, 1536, "seed", "9"), nil, Succeeded, "", 1, nil, "images/core.png"},
		{"sd3 webp", stableJob("flash", "generate/sd3", 1024, 1024, "model", "sd3.5-flash", "output_format", "webp"), nil, Succeeded, "", 1, nil, "images/flash.webp"},
		{"ultra jpeg", stableJob("ultra", "generate/ultra", 1344, 768, "aspect_ratio", "16:9", "output_format", "jpeg"), nil, Succeeded, "", 1, nil, "images/ultra.jpg"},
		{"moderated", stableJob("m", "generate/core", 1536, 1536), always(403, "content_moderation"), Failed, FailModerated, 1, nil, ""},
		{"rejected", stableJob("r", "generate/ultra", 1024, 1024), always(422, "public_figure"), Failed, FailRejected, 1, nil, ""},
		{"too large", stableJob("big", "generate/core", 1536, 1536), always(413, "payload_too_large"), Failed, FailInvalid, 1, nil, ""},
		{"429 then success", stableJob("busy", "generate/core", 1536, 1536), failFirst(429, "rate_limit_exceeded"), Succeeded, "", 2, nil, "images/busy.png"},
		{"500 then success", stableJob("flaky", "generate/core", 1536, 1536), failFirst(500, "internal_error"), Succeeded, "", 2, nil, "images/flaky.png"},
		{"401", stableJob("key", "generate/core", 1536, 1536), always(401, "unauthorized"), Failed, FailUnauthorized, 1, ErrUnauthorized, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newAPIServer(t, tt.answer, 0, "")
			cfg := fastConfig(t)
			cfg.Lockout = 20 * time.Millisecond
			res, err := runJobs(t.Context(), cfg, newClient(t, srv.URL), []manifest.Job{tt.job}, []cost.Credits{3 * cost.Credit})
			if !errors.Is(err, tt.fatal) || (tt.fatal == nil) != (err == nil) {
				t.Fatalf("Run error = %v, want %v", err, tt.fatal)
			}
			r := res.Jobs[0]
			wantCredits := cost.Credits(0)
			if tt.status == Succeeded {
				wantCredits = 3 * cost.Credit
			}
			if r.Status != tt.status || r.Failure != tt.failure || r.Attempts != tt.attempts || r.Credits != wantCredits || r.Unknown != 0 {
				t.Errorf("job = %s %q, %d attempts, credits %v, unknown %v; want %s %q, %d, %v, 0 (error %q)",
					r.Status, r.Failure, r.Attempts, r.Credits, r.Unknown, tt.status, tt.failure, tt.attempts, wantCredits, r.Error)
			}
			prompt := tt.job.Prompts[0].Text
			if got := srv.requests()[prompt]; got != tt.attempts {
				t.Errorf("server got %d requests, want %d", got, tt.attempts)
			}
			if tt.failure == FailInvalid && !strings.Contains(r.Error, "validation bug") {
				t.Errorf("413 error = %q, want it to name a validation bug", r.Error)
			}
			if tt.path == "" {
				if len(r.Images) != 0 {
					t.Errorf("images = %+v, want none", r.Images)
				}
				return
			}
			if len(r.Images) != 1 || r.Images[0].Path != tt.path || r.Images[0].RequestID != fmt.Sprintf("req%d", tt.attempts) {
				t.Fatalf("images = %+v, want %s with request id req%d", r.Images, tt.path, tt.attempts)
			}
			data, err := os.ReadFile(filepath.Join(cfg.OutDir, tt.path))
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != r.Images[0].SHA256 {
				t.Errorf("%s: sha256 does not match", tt.path)
			}
			v, _ := tt.job.Param("output_format")
			format := cmp.Or(v, "png")
			if !strings.HasSuffix(tt.path, ".png") && !bytes.Equal(withoutRecord(data), imageBytes(format)) {
				t.Errorf("%s differs from the %s the server sent", tt.path, format)
			}
			if strings.HasSuffix(tt.path, ".png") {
				checkImage(t, cfg.OutDir, r.Images[0])
			}
			form := srv.form(prompt)
			for _, p := range tt.job.Params {
				if got := form[p.Name]; len(got) != 1 || got[0] != p.Value {
					t.Errorf("server got %s = %q, want %q", p.Name, got, p.Value)
				}
			}
			if left := tempFiles(t, cfg.OutDir); len(left) > 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

// TestWireConcurrentWithSamples runs 8 jobs at concurrency 8 over real
// sockets, one of them with 3 samples (a JSON answer). The server holds
// every request until all 8 are in flight, so the run succeeds only if it
// sends them concurrently; a runner that sends them one by one gets 500s
// when the server gives up waiting.
func TestWireConcurrentWithSamples(t *testing.T) {
	const n = 8
	var mu sync.Mutex
	arrived, all := 0, make(chan struct{})
	barrier := func(w http.ResponseWriter, prompt string, try int) bool {
		mu.Lock()
		if arrived++; arrived == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return false // answer normally
		case <-time.After(10 * time.Second):
			writeError(w, 500, "server_error", "not every request arrived: the runner did not send them concurrently")
			return true
		}
	}
	srv := newAPIServer(t, barrier, 0, "")
	jobs, prices := testJobs(n)
	jobs[3].Samples = 3
	cfg := fastConfig(t)
	cfg.Concurrency = n
	cfg.MaxAttempts = 1
	res, err := runJobs(t.Context(), cfg, newClient(t, srv.URL), jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.Jobs {
		if r.Status != Succeeded {
			t.Errorf("Jobs[%d] = %s (%s)", i, r.Status, r.Error)
		}
		for _, img := range r.Images {
			checkImage(t, cfg.OutDir, img)
		}
	}
	if n := len(res.Jobs[3].Images); n != 3 {
		t.Errorf("job with 3 samples wrote %d images", n)
	}
}

func TestWireTimeout(t *testing.T) {
	srv := newAPIServer(t, nil, 400*time.Millisecond, "")
	jobs, prices := testJobs(1)
	cfg := fastConfig(t)
	cfg.AttemptTimeout = 100 * time.Millisecond
	cfg.MaxAttempts = 2
	res, err := runJobs(t.Context(), cfg, newClient(t, srv.URL), jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Jobs[0]; r.Status != Failed || r.Attempts != 2 || r.Unknown != 2*cost.Credit || res.Spent != 2*cost.Credit {
		t.Errorf("job = %s, %d attempts, unknown %v, run spent %v; want failed, 2, 2.0, 2.0 (%s)", r.Status, r.Attempts, r.Unknown, res.Spent, r.Error)
	}
}

// checkImage checks that img's file exists, decodes, and matches its sha256.
func checkImage(t *testing.T, outDir string, img Image) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(outDir, filepath.FromSlash(img.Path)))
	if err != nil {
		t.Fatalf("journaled image: %v", err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != img.SHA256 {
		t.Errorf("%s: sha256 does not match", img.Path)
	}
	if _, err := png.Decode(strings.NewReader(string(data))); err != nil {
		t.Errorf("%s: %v", img.Path, err)
	}
}

const childEnv = "BATCH_RUNNER_KILL_CHILD"

// TestKillAndResume runs the runner in a child process against a slow
// server, kills it with SIGKILL midway, and checks that everything
// journaled is intact, no partial image is visible, and a rerun sends no
// request for journaled jobs and completes the rest.
func TestKillAndResume(t *testing.T) {
	const jobsN = 30
	if dir := os.Getenv(childEnv); dir != "" {
		jobs, prices := testJobs(jobsN)
		cfg := Config{OutDir: dir, Concurrency: 3, Rate: Rate{N: 1000, Window: time.Second}}
		lk, err := outdir.Lock(dir) // held until the kill, as batch run holds it
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Unlock() // also keeps the lock's file from being collected and closed
		_, err = runJobs(context.Background(), cfg, newClient(t, os.Getenv(childEnv+"_URL")), jobs, prices)
		t.Fatalf("child was not killed: Run returned %v", err)
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	srv := newAPIServer(t, nil, 40*time.Millisecond, "")
	out := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillAndResume$")
	cmd.Env = append(os.Environ(), childEnv+"="+out, childEnv+"_URL="+srv.URL)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	journaled := func() int { // outcomes, not attempts
		data, _ := os.ReadFile(filepath.Join(out, JournalFile))
		return strings.Count(string(data), "\n") - strings.Count(string(data), `"status":"attempt"`)
	}
	deadline := time.Now().Add(10 * time.Second)
	for journaled() < 8 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if lk, err := outdir.Lock(out); !errors.Is(err, outdir.ErrLocked) {
		lk.Unlock()
		t.Errorf("Lock while the child runs = %v, want outdir.ErrLocked", err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	n := journaled()
	if n < 8 || n >= jobsN {
		t.Fatalf("child journaled %d jobs before the kill, want 8..%d", n, jobsN-1)
	}

	// what the journal says finished is intact
	f, err := os.Open(filepath.Join(out, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	done, open := map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue // a torn last line is allowed
		}
		if open[e.ID] = e.Status == attempt; open[e.ID] {
			continue
		}
		if e.Status != Succeeded || len(e.Images) != 1 {
			t.Errorf("journaled %s: %s with %d images", e.ID, e.Status, len(e.Images))
		}
		for _, img := range e.Images {
			checkImage(t, out, img)
		}
		done[e.ID] = true
	}
	f.Close()
	// every visible image is complete (temp files are dot-names)
	entries, _ := os.ReadDir(filepath.Join(out, ImagesDir))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(out, ImagesDir, e.Name()))
		if _, err := png.Decode(strings.NewReader(string(data))); err != nil {
			t.Errorf("partial image visible after kill: %s: %v", e.Name(), err)
		}
	}

	// the kill released the child's lock; taking it removes the temp files
	// the child left
	lk, err := outdir.Lock(out)
	if err != nil {
		t.Fatalf("Lock after the child was killed: %v", err)
	}
	defer lk.Unlock()
	before := srv.requests()
	inFlight, paid := 0, 0
	for _, o := range open {
		if o {
			inFlight++
		}
	}
	for _, n := range before {
		paid += n
	}
	jobs, prices := testJobs(jobsN)
	res, err := runJobs(t.Context(), Config{OutDir: out, Concurrency: 8, Rate: Rate{N: 1000, Window: time.Second}}, newClient(t, srv.URL), jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	after := srv.requests()
	for i, r := range res.Jobs {
		prompt := jobs[i].Prompts[0].Text
		if r.Status != Succeeded {
			t.Errorf("Jobs[%d] = %s (%s)", i, r.Status, r.Error)
		}
		if done[r.ID] && (after[prompt] != before[prompt] || !r.Resumed) {
			t.Errorf("journaled job %s was sent again (resumed %v)", r.ID, r.Resumed)
		}
		// a job whose image was saved just before the kill is found on disk
		if sent := after[prompt] - before[prompt]; !done[r.ID] && sent != 1 && !(sent == 0 && r.Resumed) {
			t.Errorf("job %s: %d requests on rerun (resumed %v), want 1", r.ID, sent, r.Resumed)
		}
		for _, img := range r.Images {
			checkImage(t, out, img)
		}
	}
	if left := tempFiles(t, out); len(left) > 0 {
		t.Errorf("temp files left after the rerun: %v", left)
	}
	// Every request the killed child sent counts against the budget: each
	// left an attempt line before it went out.
	prior := res.PriorCharged + res.PriorPossiblyBilled
	if want := cost.Credits(len(done)+inFlight) * cost.Credit; prior != want || prior < cost.Credits(paid)*cost.Credit {
		t.Errorf("the rerun counts %v credits spent before it (%v charged); want %v for %d outcomes and %d requests in flight, and the server got %d",
			prior, res.PriorCharged, want, len(done), inFlight, paid)
	}
	t.Logf("killed after %d of %d jobs were journaled, %d in flight; rerun sent %d requests", len(done), jobsN, inFlight, jobsN-len(done))
}

// BenchmarkRun measures jobs per second through the whole pipeline (limiter,
// ledger, HTTP client, PNG streaming, fsynced files and journal) against a
// zero-latency loopback server with a limit that never binds.
func BenchmarkRun(b *testing.B) {
	srv := newAPIServer(b, nil, 0, "")
	client := newClient(b, srv.URL)
	const perRun = 200
	jobs, prices := testJobs(perRun)
	cfg := Config{Concurrency: 32, Rate: Rate{N: 1_000_000, Window: time.Second}}
	total := 0
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		cfg.OutDir = filepath.Join(b.TempDir(), strconv.Itoa(i))
		res, err := runJobs(b.Context(), cfg, client, jobs, prices)
		if err != nil || res.Jobs[perRun-1].Status != Succeeded {
			b.Fatalf("Run = %v", err)
		}
		total += perRun
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "jobs/s")
}
