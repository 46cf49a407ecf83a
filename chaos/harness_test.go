package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/sandbox"
)

// testKey is the API key of every run. Its 8-character pieces mix cases
// and letters outside hex, so none of them turns up in a hash, an id or an
// image by chance.
const testKey = "sk-ChaosQz7XvKpWmTyLrNbJdHgFsAcEu3"

// corePrice is what the sandbox charges for one generate/core result under
// the default price sheet, which every manifest here uses.
const corePrice = 3 * cost.Credit

// Deadlines. They only bound a wait for observable state, and fail the test
// when passed: none is a measurement.
const (
	runDeadline  = 90 * time.Second // one batch process, start to exit
	waitDeadline = 30 * time.Second // a journal line, a server counter
)

// batchBin is the batch binary built by TestMain; it is set once, before
// any test runs, and only read afterwards.
var batchBin string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

// testMain builds the binary once for every test.
func testMain(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "batch-chaos-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "batch")
	build := exec.Command("go", "build", "-o", bin, "./cmd/batch")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: go build ./cmd/batch: %v\n%s", err, out)
		return 1
	}
	batchBin = bin
	return m.Run()
}

// moduleRoot is the folder of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// ---------------------------------------------------------------------------
// The server: the sandbox behind a proxy that counts charges per job.

// fault is how the proxy misbehaves; the zero value passes everything
// through to the sandbox unchanged.
type fault struct {
	// intercept, when non-nil, sees every request before the sandbox and
	// may answer it itself (the sandbox then charges nothing); it returns
	// whether it did. gen is the request's 1-based number among generation
	// requests, 0 for any other request.
	intercept func(w http.ResponseWriter, r *http.Request, gen int) bool
	// tamper, when non-nil, gets the sandbox's answer to each generation
	// request, buffered, and writes what the client sees instead. A
	// dropped connection is not buffered: it reaches the client as is.
	tamper func(w http.ResponseWriter, r *http.Request, a *answer)
}

// answer is a buffered answer of the sandbox.
type answer struct {
	status int
	header http.Header
	body   []byte
	// cut, set by a tamper that sends only part of the image, keeps the
	// answer from counting as an image delivered.
	cut *bool
}

// write sends a to w unchanged.
func (a *answer) write(w http.ResponseWriter) {
	for k, v := range a.header {
		w.Header()[k] = v
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// jobCount is what the server did for one job (one prompt), over every run.
type jobCount struct {
	charged   int // generation requests the sandbox charged for (answered 200 or dropped)
	delivered int // of those, answered 200: an image reached the wire
}

// server is a sandbox behind a counting, misbehaving proxy, listening on
// loopback. It is safe for concurrent use.
type server struct {
	URL   string
	sb    *sandbox.Server
	price cost.Credits // what every generation request costs
	fault fault

	inflight atomic.Int64 // requests being handled

	mu       sync.Mutex
	requests int            // every request
	tokens   map[string]int // requests by bearer token
	gens     int            // generation requests received
	answered int            // generation requests whose handler has finished
	jobs     map[string]*jobCount
	refused  bool // a generation request was answered 401 or 402
	// afterRefusal counts generation requests that arrived after one was
	// answered 401 or 402.
	afterRefusal int
}

// startServer starts a sandbox with cfg behind the proxy; price is what
// each generation request of the test's manifest costs.
func startServer(t *testing.T, cfg sandbox.Config, price cost.Credits, f fault) *server {
	t.Helper()
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{sb: sb, price: price, fault: f, tokens: map[string]int{}, jobs: map[string]*jobCount{}}
	hs := httptest.NewServer(s)
	s.URL = hs.URL
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
	})
	return s
}

// isGeneration reports whether r asks for an image (and may be charged).
func isGeneration(r *http.Request) bool {
	return r.Method == http.MethodPost &&
		(strings.HasPrefix(r.URL.Path, "/v2beta/stable-image/") || strings.HasPrefix(r.URL.Path, "/v1/generation/"))
}

// bearer is r's bearer token.
func bearer(r *http.Request) string {
	_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.TrimSpace(tok)
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	gen := isGeneration(r)
	prompt := ""
	if gen {
		body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		if err != nil {
			return // the client left
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		prompt = promptOf(r, body)
	}
	s.mu.Lock()
	s.requests++
	s.tokens[bearer(r)]++
	n := 0
	if gen {
		s.gens++
		n = s.gens
		if s.refused {
			s.afterRefusal++
		}
	}
	s.mu.Unlock()

	rec := &recorder{w: w, buffer: gen && s.fault.tamper != nil, header: http.Header{}}
	if gen {
		defer func() { s.settle(prompt, rec, recover()) }()
	}
	if s.fault.intercept != nil && s.fault.intercept(rec, r, n) {
		rec.intercepted = true
		return
	}
	s.sb.ServeHTTP(rec, r)
	if rec.buffer && !rec.hijacked && rec.status != 0 {
		s.fault.tamper(w, r, &answer{status: rec.status, header: rec.header, body: rec.body.Bytes(), cut: &rec.cut})
	}
}

// settle counts a finished generation request; p is what its handler
// panicked with, passed on after counting.
func (s *server) settle(prompt string, rec *recorder, p any) {
	aborted := p == http.ErrAbortHandler // the sandbox's drop, when it cannot hijack
	s.mu.Lock()
	s.answered++
	if !rec.intercepted {
		c := s.jobs[prompt]
		if c == nil {
			c = &jobCount{}
			s.jobs[prompt] = c
		}
		// The sandbox charges a request it answers 200 or drops; it
		// refunds one it fails (500) and one whose client left before the
		// answer, and charges nothing for a refusal.
		if rec.status == http.StatusOK || rec.hijacked || aborted {
			c.charged++
		}
		if rec.status == http.StatusOK && !rec.cut {
			c.delivered++
		}
	}
	if rec.status == http.StatusUnauthorized || rec.status == http.StatusPaymentRequired {
		s.refused = true
	}
	s.mu.Unlock()
	if p != nil {
		panic(p)
	}
}

// promptOf reads a generation request's prompt: the Stable Image form's
// prompt field, or a v1 request's first text prompt.
func promptOf(r *http.Request, body []byte) string {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				return ""
			}
			if p.FormName() == "prompt" {
				b, _ := io.ReadAll(io.LimitReader(p, 1<<16))
				return string(b)
			}
		}
	case mt == "application/json":
		var v struct {
			TextPrompts []struct {
				Text string `json:"text"`
			} `json:"text_prompts"`
		}
		if json.Unmarshal(body, &v) == nil && len(v.TextPrompts) > 0 {
			return v.TextPrompts[0].Text
		}
	}
	return ""
}

// recorder records what a handler answered, passing it through to the
// client, or with buffer keeping it for fault.tamper.
type recorder struct {
	w           http.ResponseWriter
	buffer      bool
	header      http.Header // the answer's header, when buffering
	status      int
	body        bytes.Buffer
	hijacked    bool
	intercepted bool // answered by fault.intercept, not the sandbox
	cut         bool // a tamper sent only part of the answer
}

func (r *recorder) Header() http.Header {
	if r.buffer {
		return r.header
	}
	return r.w.Header()
}

func (r *recorder) WriteHeader(code int) {
	if r.status != 0 {
		return
	}
	r.status = code
	if !r.buffer {
		r.w.WriteHeader(code)
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if r.buffer {
		return r.body.Write(p)
	}
	return r.w.Write(p)
}

func (r *recorder) Flush() {
	if f, ok := r.w.(http.Flusher); ok && !r.buffer {
		f.Flush()
	}
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.w.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("not hijackable")
	}
	r.hijacked = true
	return hj.Hijack()
}

// snapshot is a copy of the server's counters.
type snapshot struct {
	requests, gens, answered, afterRefusal int
	tokens                                 map[string]int
	jobs                                   map[string]jobCount
}

func (s *server) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := snapshot{requests: s.requests, gens: s.gens, answered: s.answered, afterRefusal: s.afterRefusal,
		tokens: map[string]int{}, jobs: map[string]jobCount{}}
	for k, v := range s.tokens {
		snap.tokens[k] = v
	}
	for k, v := range s.jobs {
		snap.jobs[k] = *v
	}
	return snap
}

// charged is the credits the server took, by its own count per job.
func (snap snapshot) charged(price cost.Credits) cost.Credits {
	var n int
	for _, c := range snap.jobs {
		n += c.charged
	}
	return cost.Credits(n) * price
}

// idle waits until no request is being handled (a killed client's requests
// included), then checks that the proxy's count of charges is the
// sandbox's, which proves the per-job counts right.
func (s *server) idle(t *testing.T) snapshot {
	t.Helper()
	waitFor(t, nil, "the server to finish every request", func() bool { return s.inflight.Load() == 0 })
	snap := s.snapshot()
	if got, want := snap.charged(s.price), s.sb.Stats().Charged; got != want {
		t.Fatalf("harness: the proxy counted %s credits of charges, the sandbox %s", got, want)
	}
	return snap
}

// ---------------------------------------------------------------------------
// Manifests.

// job is one job of a test manifest.
type job struct{ id, prompt string }

// jobs returns n generate/core jobs, j001… with prompts "PREFIX N".
func jobs(n int, prefix string) []job {
	js := make([]job, n)
	for i := range js {
		js[i] = job{id: fmt.Sprintf("j%03d", i+1), prompt: fmt.Sprintf("%s %d", prefix, i+1)}
	}
	return js
}

// writeManifest writes a manifest of js (generate/core, 1:1, PNG, fixed
// seeds) into dir and returns its path.
func writeManifest(t *testing.T, dir, name string, js []job) string {
	t.Helper()
	return writeManifestHead(t, dir, name, "service: generate/core\n", js)
}

// writeManifestHead writes a manifest of js with head (the operation and
// defaults, as YAML lines) and returns its path.
func writeManifestHead(t *testing.T, dir, name, head string, js []job) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("version: 1\nname: chaos\npricing: stability-2025-08\n" + head + "jobs:\n")
	for i, j := range js {
		fmt.Fprintf(&b, "  - id: %s\n    prompt: %s\n    seed: %d\n", j.id, j.prompt, i+1)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ---------------------------------------------------------------------------
// Processes.

// lockedBuffer is a bytes.Buffer safe for a process to write while a test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func (l *lockedBuffer) String() string { return string(l.Bytes()) }

// proc is a running batch process.
type proc struct {
	args           []string
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan struct{} // closed when it has exited
	code           int           // exit code, -1 when killed by a signal; valid after done
	sig            syscall.Signal
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit code (-1 when a
// signal killed it); past runDeadline it kills it and fails the test.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(runDeadline):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("batch %s did not exit within %v\nstderr:\n%s", strings.Join(p.args, " "), runDeadline, p.stderr)
		return 0
	}
}

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitFor polls cond until it holds. It fails the test past waitDeadline,
// or at once when p (if not nil) exits first.
func waitFor(t *testing.T, p *proc, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if p != nil && p.exited() {
			if cond() {
				return
			}
			t.Fatalf("waiting for %s: batch exited first with code %d\nstderr:\n%s", what, p.code, p.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %v", what, waitDeadline)
		}
		time.Sleep(5 * time.Millisecond) // polling observable state, not ordering
	}
}

// ---------------------------------------------------------------------------
// A test's world: one folder, one OUT, one server, every process started.

type world struct {
	t       *testing.T
	dir     string // the test's folder (the processes' working directory)
	out     string // the output folder
	summary string // GITHUB_STEP_SUMMARY
	srv     *server
	key     string

	mu    sync.Mutex
	procs []*proc
}

// newWorld makes a folder with OUT inside and a step-summary file.
func newWorld(t *testing.T, srv *server) *world {
	t.Helper()
	dir := t.TempDir()
	return &world{t: t, dir: dir, out: filepath.Join(dir, "out"), summary: filepath.Join(dir, "step-summary.md"), srv: srv, key: testKey}
}

// start starts batch with args, the key in its environment.
func (w *world) start(args ...string) *proc { return w.startKey(w.key, args...) }

// startKey starts batch with args and key as STABILITY_API_KEY.
func (w *world) startKey(key string, args ...string) *proc {
	w.t.Helper()
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "STABILITY_API_KEY=") || strings.HasPrefix(kv, "GITHUB_STEP_SUMMARY=")
	})
	env = append(env, "STABILITY_API_KEY="+key, "GITHUB_STEP_SUMMARY="+w.summary)
	// The world's own image cache (and rate file), never the user's.
	env = append(env, "XDG_CACHE_HOME="+filepath.Join(w.dir, "xdg-cache"))
	cmd := exec.Command(batchBin, args...)
	cmd.Dir = w.dir
	cmd.Env = env
	p := &proc{args: args, cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code, p.sig = -1, ws.Signal()
			}
		case err != nil:
			p.code = -2
		}
		close(p.done)
	}()
	w.t.Cleanup(func() {
		if !p.exited() {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	return p
}

// run runs batch with args to its end.
func (w *world) run(args ...string) *proc {
	w.t.Helper()
	p := w.start(args...)
	p.wait(w.t)
	return p
}

// runArgs is `batch run` of manifest into OUT against the server, fast,
// with a JSON summary on stdout, then extra flags.
func (w *world) runArgs(manifest string, extra ...string) []string {
	args := []string{"run", "--api-url", w.srv.URL, "--out", w.out, "--rate", "1000/1s", "--format", "json"}
	return append(append(args, extra...), manifest)
}

// ---------------------------------------------------------------------------
// What a run leaves: report.json, the journal, the files.

type reportImage struct {
	Path         string `json:"path"`
	SHA256       string `json:"sha256"`
	FinishReason string `json:"finish_reason"`
}

type reportJob struct {
	ID             string        `json:"id"`
	Status         string        `json:"status"`
	Failure        string        `json:"failure"`
	Credits        cost.Credits  `json:"credits"`
	PossiblyBilled cost.Credits  `json:"possibly_billed_credits"`
	Attempts       int           `json:"attempts"`
	Resumed        bool          `json:"resumed"`
	Error          string        `json:"error"`
	Images         []reportImage `json:"images"`
}

// runReport is what the tests read of report.json (and of a JSON summary).
type runReport struct {
	Charged        cost.Credits `json:"charged_credits"`
	PossiblyBilled cost.Credits `json:"possibly_billed_credits"`
	Interrupted    bool         `json:"interrupted"`
	Totals         struct {
		Jobs, Succeeded, Failed, Filtered, Skipped int
	} `json:"totals"`
	Jobs []reportJob `json:"jobs"`
}

func (r *runReport) job(id string) *reportJob {
	for i := range r.Jobs {
		if r.Jobs[i].ID == id {
			return &r.Jobs[i]
		}
	}
	return nil
}

// readReport reads OUT/report.json; nil when there is none.
func readReport(t *testing.T, out string) *runReport {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(out, report.RunFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var r runReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	return &r
}

// summaryOf parses a JSON summary printed on stdout; nil when there is
// none.
func summaryOf(t *testing.T, p *proc) *runReport {
	t.Helper()
	data := p.stdout.Bytes()
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var r runReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Errorf("stdout is not a JSON summary: %v\n%s", err, data)
		return nil
	}
	return &r
}

type journalEntry struct {
	ID      string        `json:"id"`
	Status  string        `json:"status"`
	Credits cost.Credits  `json:"credits"`
	Unknown cost.Credits  `json:"unknown"`
	Images  []reportImage `json:"images"`
}

// journal is OUT/journal.jsonl as read by a test.
type journal struct {
	last    map[string]journalEntry // each job's last entry
	lines   int                     // complete lines
	damaged []int                   // numbers of complete lines that are not entries
	torn    bool                    // the file ends without a newline
}

// readJournal reads OUT/journal.jsonl; a missing one is empty.
func readJournal(t *testing.T, out string) journal {
	t.Helper()
	j := journal{last: map[string]journalEntry{}}
	data, err := os.ReadFile(filepath.Join(out, "journal.jsonl"))
	if errors.Is(err, fs.ErrNotExist) {
		return j
	}
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; len(data) > 0; n++ {
		line, rest, ok := bytes.Cut(data, []byte("\n"))
		if !ok {
			j.torn = true
			break
		}
		data = rest
		j.lines++
		var e journalEntry
		err := json.Unmarshal(line, &e)
		if err == nil && e.Status == "run" {
			continue // a run's manifest, no job's line
		}
		if err != nil || e.ID == "" {
			j.damaged = append(j.damaged, n)
			continue
		}
		j.last[e.ID] = e
	}
	return j
}

// succeeded is the set of jobs whose last entry is succeeded.
func (j journal) succeeded() map[string]bool {
	s := map[string]bool{}
	for id, e := range j.last {
		if e.Status == "succeeded" {
			s[id] = true
		}
	}
	return s
}

// agree relaxes checkAgree.
type agree struct {
	reportMayBeMissing bool // the run may have ended without writing report.json
	damagedLinesKept   bool // the test damaged a journal line, which may be kept
}

// checkAgree checks that report.json, the journal and the files under
// images/ and filtered/ tell the same story: every image the report lists
// is on disk with its sha256, no image is on disk that the report does not
// list, the journal records each finished job with the same images, and
// it has no damaged or torn line.
func checkAgree(t *testing.T, out string, o agree) *runReport {
	t.Helper()
	rep := readReport(t, out)
	if rep == nil {
		if !o.reportMayBeMissing {
			t.Errorf("no report.json in %s", out)
		}
		return nil
	}
	j := readJournal(t, out)
	if (len(j.damaged) > 0 && !o.damagedLinesKept) || j.torn {
		t.Errorf("journal has damaged lines %v (torn end: %v)", j.damaged, j.torn)
	}
	listed := map[string]bool{}
	var totals [4]int
	for _, rj := range rep.Jobs {
		switch rj.Status {
		case "succeeded":
			totals[0]++
		case "failed":
			totals[1]++
		case "filtered":
			totals[2]++
		default:
			totals[3]++
		}
		dir := map[string]string{"succeeded": "images/", "filtered": "filtered/"}[rj.Status]
		if dir == "" && len(rj.Images) > 0 {
			t.Errorf("report: job %s is %s but lists images %v", rj.ID, rj.Status, rj.Images)
		}
		if dir != "" && len(rj.Images) == 0 {
			t.Errorf("report: job %s is %s with no image", rj.ID, rj.Status)
		}
		for _, im := range rj.Images {
			listed[im.Path] = true
			if dir != "" && !strings.HasPrefix(im.Path, dir) {
				t.Errorf("report: job %s (%s) has image %s outside %s", rj.ID, rj.Status, im.Path, dir)
			}
			if rj.Status == "succeeded" && im.FinishReason != "SUCCESS" {
				t.Errorf("report: job %s succeeded with an image whose finish reason is %q", rj.ID, im.FinishReason)
			}
			sum, err := fileSHA256(filepath.Join(out, filepath.FromSlash(im.Path)))
			if err != nil {
				t.Errorf("report: job %s: image %s: %v", rj.ID, im.Path, err)
			} else if sum != im.SHA256 {
				t.Errorf("report: job %s: image %s has sha256 %s on disk, the report says %s", rj.ID, im.Path, sum, im.SHA256)
			}
		}
		e, inJournal := j.last[rj.ID]
		switch {
		case rj.Status == "succeeded" || rj.Status == "filtered":
			if !inJournal || e.Status != rj.Status {
				t.Errorf("job %s is %s in the report, journal has %+v (present: %v)", rj.ID, rj.Status, e, inJournal)
			} else if !sameImages(e.Images, rj.Images) {
				t.Errorf("job %s: journal images %v, report images %v", rj.ID, e.Images, rj.Images)
			}
		case inJournal && (e.Status == "succeeded" || e.Status == "filtered"):
			t.Errorf("job %s is %s in the journal but %s in the report", rj.ID, e.Status, rj.Status)
		}
	}
	if got := [4]int{rep.Totals.Succeeded, rep.Totals.Failed, rep.Totals.Filtered, rep.Totals.Skipped}; got != totals || rep.Totals.Jobs != len(rep.Jobs) {
		t.Errorf("report totals %+v do not count its %d jobs %v", rep.Totals, len(rep.Jobs), totals)
	}
	for _, sub := range []string{"images", "filtered"} {
		entries, err := os.ReadDir(filepath.Join(out, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Errorf("read %s: %v", sub, err)
			continue
		}
		for _, e := range entries {
			if p := sub + "/" + e.Name(); !listed[p] {
				t.Errorf("%s is on disk (%v) but in no job of report.json", p, e.Type())
			}
		}
	}
	return rep
}

func sameImages(a, b []reportImage) bool {
	return slices.EqualFunc(a, b, func(x, y reportImage) bool { return x.Path == y.Path && x.SHA256 == y.SHA256 })
}

func fileSHA256(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file (%v)", fi.Mode())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// keyPieces is the key and every 8-character piece of it.
func keyPieces(key string) []string {
	pieces := []string{key}
	for i := 0; i+8 <= len(key); i++ {
		pieces = append(pieces, key[i:i+8])
	}
	return pieces
}

// leak returns the first piece of key in data, or "".
func leak(key string, data []byte) string {
	for _, p := range keyPieces(key) {
		if bytes.Contains(data, []byte(p)) {
			return p
		}
	}
	return ""
}

// checkNoKey looks for each key, and every 8-character piece of it, in
// every file under the world's folder (OUT, the step summary, anything a
// symlink pointed at), in the output of every process started, and in
// every report format `batch report` renders of OUT.
func (w *world) checkNoKey(keys ...string) {
	t := w.t
	t.Helper()
	if len(keys) == 0 {
		keys = []string{w.key}
	}
	texts := map[string][]byte{}
	if _, err := os.Stat(filepath.Join(w.out, report.RunFile)); err == nil {
		for _, f := range report.RunFormats {
			p := w.start("report", "--format", f, w.out)
			p.wait(t)
			texts["batch report --format "+f] = p.stdout.Bytes()
		}
	}
	w.mu.Lock()
	for i, p := range w.procs {
		name := fmt.Sprintf("process %d (batch %s)", i+1, strings.Join(p.args, " "))
		texts[name+" stdout"] = p.stdout.Bytes()
		texts[name+" stderr"] = p.stderr.Bytes()
	}
	w.mu.Unlock()
	_ = filepath.WalkDir(w.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if data, err := os.ReadFile(path); err == nil {
			texts[path] = data
		}
		return nil
	})
	found := map[string][]string{} // piece → where
	for _, name := range slices.Sorted(mapKeys(texts)) {
		for _, key := range keys {
			if p := leak(key, texts[name]); p != "" {
				found[p] = append(found[p], name)
			}
		}
	}
	for _, p := range slices.Sorted(mapKeys(found)) {
		t.Errorf("the API key (piece %q) is in:\n  %s", p, strings.Join(found[p], "\n  "))
	}
}

// checkNotPaidTwice: the server delivered at most one image per job, over
// every run, and charged each job at most maxCharges times.
func checkNotPaidTwice(t *testing.T, snap snapshot, maxCharges int) {
	t.Helper()
	for _, prompt := range slices.Sorted(mapKeys(snap.jobs)) {
		c := snap.jobs[prompt]
		if c.delivered > 1 {
			t.Errorf("job %q: the server delivered %d images for it: paid twice", prompt, c.delivered)
		}
		if c.charged > maxCharges {
			t.Errorf("job %q: the server charged it %d times, want at most %d", prompt, c.charged, maxCharges)
		}
	}
}

// checkBudget: the server took no more than budget over every run.
func checkBudget(t *testing.T, snap snapshot, price, budget cost.Credits) {
	t.Helper()
	if got := snap.charged(price); got > budget {
		t.Errorf("the server charged %s credits over every run, budget %s", got, budget)
	}
}

// checkAccounted: a run's report accounts for every credit the server took
// during it (before and after are the server's counters around the run):
// the charged credits of the jobs it ran (not resumed) plus what it says
// was possibly billed cover the server's charges.
func checkAccounted(t *testing.T, rep *runReport, before, after snapshot, price cost.Credits) {
	t.Helper()
	if rep == nil {
		return
	}
	took := after.charged(price) - before.charged(price)
	var ran cost.Credits
	for _, j := range rep.Jobs {
		if !j.Resumed {
			ran += j.Credits
		}
	}
	if ran+rep.PossiblyBilled < took {
		t.Errorf("the server took %s credits during the run; the report shows %s charged and %s possibly billed",
			took, ran, rep.PossiblyBilled)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// journalLines counts OUT/journal.jsonl's complete lines.
func journalLines(out string) int {
	data, err := os.ReadFile(filepath.Join(out, "journal.jsonl"))
	if err != nil {
		return 0
	}
	return bytes.Count(data, []byte("\n"))
}

// ---------------------------------------------------------------------------
// Machines.

// mountTmpfs mounts a tmpfs of size (as mount's size option, "2m") with
// extra options at dir, unmounted when the test ends. Without the privilege
// to mount it skips, unless CI=true, where it fails.
func mountTmpfs(t *testing.T, dir, size string, extra ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append([]string{"size=" + size}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", strings.Join(opts, ","), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): %v %s", err, bytes.TrimSpace(out))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			_ = exec.Command("umount", "-l", dir).Run()
			t.Logf("umount %s: %v %s", dir, err, out)
		}
	})
}

// command runs a system command and returns its combined output.
func command(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// fill writes zeros into path until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			return
		}
	}
}

// tree is a folder's content: each path (relative) with its type, mode and
// sha256 of regular files.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		if fi.Mode().IsRegular() {
			sum, err := fileSHA256(path)
			if err != nil {
				return err
			}
			desc += " " + sum + " " + strconv.FormatInt(fi.Size(), 10)
		}
		m[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
