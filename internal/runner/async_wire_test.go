package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
)

// asyncServer is a loopback stand-in for the Stable Image API:
// generate/core answers an image; upscale/creative answers a generation id
// and its result is 202 for the first `pending` polls, then the image.
type asyncServer struct {
	*httptest.Server
	id string

	mu       sync.Mutex
	pending  int
	submits  int
	polls    int
	inputSum string // SHA-256 of the image part of the last submit
}

func newAsyncServer(t testing.TB, pending int) *asyncServer {
	sum := sha256.Sum256([]byte("generation"))
	s := &asyncServer{id: hex.EncodeToString(sum[:]), pending: pending}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

func (s *asyncServer) handle(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2beta/stable-image/generate/core":
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			writeStableError(w, 400, "bad_request", err.Error())
			return
		}
		writePNG(w, "5")
	case r.Method == http.MethodPost && r.URL.Path == "/v2beta/stable-image/upscale/creative":
		if err := r.ParseMultipartForm(1 << 20); err != nil || r.FormValue("prompt") == "" {
			writeStableError(w, 400, "bad_request", "prompt: is required")
			return
		}
		f, _, err := r.FormFile("image")
		if err != nil {
			writeStableError(w, 400, "bad_request", "image: is required")
			return
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		s.mu.Lock()
		s.submits++
		s.inputSum = hex.EncodeToString(h.Sum(nil))
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q}`, s.id)
	case r.Method == http.MethodGet && r.URL.Path == "/v2beta/results/"+s.id:
		s.mu.Lock()
		s.polls++
		wait := s.polls <= s.pending
		s.mu.Unlock()
		if wait {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintf(w, `{"id":%q,"status":"in-progress"}`, s.id)
			return
		}
		writePNG(w, "9")
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2beta/results/"):
		writeStableError(w, 404, "generation_not_found", "Generation not found")
	default:
		writeStableError(w, 404, "not_found", r.URL.Path)
	}
}

func writePNG(w http.ResponseWriter, seed string) {
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Finish-Reason", "SUCCESS")
	w.Header().Set("Seed", seed)
	w.Write(tinyPNG())
}

func (s *asyncServer) counts() (submits, polls int, inputSum string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.submits, s.polls, s.inputSum
}

func (s *asyncServer) finishNext() {
	s.mu.Lock()
	s.pending = 0
	s.mu.Unlock()
}

// TestWireAsyncPipeline runs generate/core → upscale/creative through the
// real client: the source's file is uploaded, the submit answers an id,
// the result answers 202 and then the image.
func TestWireAsyncPipeline(t *testing.T) {
	srv := newAsyncServer(t, 1)
	jobs := []manifest.Job{
		pipeJob("hero", "generate/core"),
		pipeJob("big", "upscale/creative", from("image", "hero")),
	}
	cfg := fastConfig(t)
	cfg.PollInterval, cfg.FastPolls = 20*time.Millisecond, true
	res, err := runJobs(t.Context(), cfg, newClient(t, srv.URL), jobs, []cost.Credits{3 * cost.Credit, creativePrice})
	if err != nil {
		t.Fatal(err)
	}
	hero, big := res.Jobs[0], res.Jobs[1]
	if hero.Status != Succeeded || big.Status != Succeeded {
		t.Fatalf("hero %s (%s), big %s (%s)", hero.Status, hero.Error, big.Status, big.Error)
	}
	submits, polls, inputSum := srv.counts()
	if submits != 1 || polls != 2 {
		t.Errorf("%d submits, %d polls; want 1, 2 (202, then the image)", submits, polls)
	}
	if inputSum != hero.Images[0].SHA256 {
		t.Errorf("the server got an image input with sha256 %s, want hero's %s", inputSum, hero.Images[0].SHA256)
	}
	if big.GenerationID != srv.id || big.Credits != creativePrice || len(big.Images) != 1 || big.Images[0].Path != "images/big.png" || big.Images[0].Seed != 9 {
		t.Errorf("big = %+v", big)
	}
	checkImage(t, cfg.OutDir, big.Images[0])
	if left := tempFiles(t, cfg.OutDir); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

const asyncChildEnv = "BATCH_RUNNER_ASYNC_KILL_CHILD"

// TestKillWhilePolling runs an async job in a child process, kills it
// with SIGKILL while it polls, and reruns: the rerun polls the journaled
// id and never submits again.
func TestKillWhilePolling(t *testing.T) {
	if dir := os.Getenv(asyncChildEnv); dir != "" {
		cfg := Config{OutDir: dir, PollInterval: 10 * time.Millisecond, FastPolls: true}
		jobs := []manifest.Job{creative(os.Getenv(asyncChildEnv + "_IN"))}
		_, err := runJobs(context.Background(), cfg, newClient(t, os.Getenv(asyncChildEnv+"_URL")), jobs, []cost.Credits{creativePrice})
		t.Fatalf("child was not killed: Run returned %v", err)
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	srv := newAsyncServer(t, 1<<30)
	in, out := inputPNG(t), t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillWhilePolling$")
	cmd.Env = append(os.Environ(), asyncChildEnv+"="+out, asyncChildEnv+"_URL="+srv.URL, asyncChildEnv+"_IN="+in)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, polls, _ := srv.counts(); polls < 3 && time.Now().Before(deadline); _, polls, _ = srv.counts() {
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if submits, polls, _ := srv.counts(); submits != 1 || polls < 3 {
		t.Fatalf("child: %d submits, %d polls before the kill; want 1, ≥ 3", submits, polls)
	}
	data, err := os.ReadFile(filepath.Join(out, JournalFile))
	if err != nil || !strings.Contains(string(data), `"status":"submitted","generation_id":"`+srv.id+`"`) {
		t.Fatalf("journal after the kill: %q, %v", data, err)
	}

	srv.finishNext()
	cfg := Config{OutDir: out, PollInterval: 10 * time.Millisecond, FastPolls: true}
	res, err := runJobs(t.Context(), cfg, newClient(t, srv.URL), []manifest.Job{creative(in)}, []cost.Credits{creativePrice})
	if err != nil {
		t.Fatal(err)
	}
	if up := res.Jobs[0]; up.Status != Succeeded || up.GenerationID != srv.id || up.Credits != creativePrice {
		t.Errorf("rerun = %+v", up)
	}
	if submits, _, _ := srv.counts(); submits != 1 {
		t.Errorf("%d submits after the rerun, want 1", submits)
	}
}
