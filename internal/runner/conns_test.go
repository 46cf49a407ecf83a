package runner

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/batch-tool/batch/internal/sandbox"
	"github.com/batch-tool/batch/internal/stability"
)

// TestRunReusesConnections runs many jobs through the real client against
// the sandbox and counts the TCP connections the server accepted: a run
// opens about as many as its concurrency, whatever its length, because
// the client keeps that many idle between requests.
func TestRunReusesConnections(t *testing.T) {
	const jobCount, concurrency = 200, 32
	sb, err := sandbox.New(sandbox.Config{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(sb)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	client, err := stability.NewClient(stability.Options{BaseURL: srv.URL, APIKey: "sk-test", Concurrency: concurrency})
	if err != nil {
		t.Fatal(err)
	}
	// SDXL images, each checked in full after it arrives: meanwhile the
	// worker's connection is idle, which is when a small idle pool closes
	// it.
	jobs, prices := sdxlJobs(jobCount)
	cfg := fastConfig(t)
	cfg.Rate, cfg.Concurrency = Rate{N: 1 << 30, Window: 1e9}, concurrency
	res, err := runJobs(t.Context(), cfg, client, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	for _, jr := range res.Jobs {
		if jr.Status != Succeeded {
			t.Fatalf("job %s: %s %s", jr.ID, jr.Status, jr.Error)
		}
	}
	if got, most := conns.Load(), int64(2*concurrency); got > most {
		t.Errorf("%d jobs at concurrency %d opened %d connections, want at most %d", jobCount, concurrency, got, most)
	}
	t.Logf("%d jobs at concurrency %d opened %d connections", jobCount, concurrency, conns.Load())
}
