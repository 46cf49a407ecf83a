package stability

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// connCounter starts handler on a loopback server that counts the TCP
// connections it accepts, and returns the server and the count.
func connCounter(t testing.TB, handler http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// answerPNG answers with img and its length, as the API does.
func answerPNG(w http.ResponseWriter, img []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Seed", "1")
	w.Header().Set("Finish-Reason", FinishSuccess)
	w.Write(img)
}

// barrier holds its callers until n of them wait, then lets them all go,
// wave after wave.
type barrier struct {
	n       int
	mu      sync.Mutex
	waiting int
	release chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, release: make(chan struct{})} }

func (b *barrier) wait() {
	b.mu.Lock()
	b.waiting++
	ch := b.release
	if b.waiting == b.n {
		close(ch)
		b.waiting, b.release = 0, make(chan struct{})
	}
	b.mu.Unlock()
	<-ch
}

// TestConnectionsReusedAtConcurrency sends waves of requests from as many
// goroutines as Options.Concurrency says. Each wave is held at the server
// until all of it is in flight, so it needs that many connections at
// once, and the next wave starts only when every answer of this one is
// read, so all of them are idle together in between. The client must keep
// them all: net/http's default of 2 idle connections per host would close
// all but two after each wave and open new ones for the next.
func TestConnectionsReusedAtConcurrency(t *testing.T) {
	const waves = 20
	for _, concurrency := range []int{1, 4, 16} {
		t.Run(strconv.Itoa(concurrency), func(t *testing.T) {
			img := fakeImage("png", 1, 2000)
			wave, done := newBarrier(concurrency), newBarrier(concurrency)
			srv, conns := connCounter(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				wave.wait()
				answerPNG(w, img)
			})
			c, err := NewClient(Options{BaseURL: srv.URL, APIKey: testKey, Concurrency: concurrency})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make([]error, concurrency)
			for i := range concurrency {
				wg.Go(func() {
					for range waves {
						if _, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{}, &discardSink{}); err != nil {
							errs[i] = err
						}
						done.wait()
					}
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if got, most := conns.Load(), int64(2*concurrency); got > most {
				t.Errorf("%d waves of %d requests opened %d connections, want at most %d", waves, concurrency, got, most)
			}
		})
	}
}

// TestNewClientTransport: the client's own transport keeps Concurrency
// idle connections (DefaultConcurrency when zero or less); a caller's
// Transport is kept as it is.
func TestNewClientTransport(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want int
	}{
		{"zero", Options{}, DefaultConcurrency},
		{"negative", Options{Concurrency: -3}, DefaultConcurrency},
		{"set", Options{Concurrency: 64}, 64},
		{"client without transport", Options{Concurrency: 8, HTTPClient: &http.Client{}}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			tr, ok := c.hc.Transport.(*http.Transport)
			if !ok {
				t.Fatalf("transport is %T, want *http.Transport", c.hc.Transport)
			}
			if tr.MaxIdleConnsPerHost != tt.want || tr.MaxIdleConns != tt.want {
				t.Errorf("MaxIdleConnsPerHost, MaxIdleConns = %d, %d, want %d", tr.MaxIdleConnsPerHost, tr.MaxIdleConns, tt.want)
			}
			if tr.Proxy == nil {
				t.Error("the transport ignores HTTPS_PROXY")
			}
		})
	}
	t.Run("caller's transport", func(t *testing.T) {
		rt := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("fake") })
		c, err := NewClient(Options{Concurrency: 8, HTTPClient: &http.Client{Transport: rt}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.hc.Transport.(roundTripFunc); !ok {
			t.Errorf("transport is %T, want the caller's", c.hc.Transport)
		}
	})
}

// failingSink refuses every image.
type failingSink struct{}

func (failingSink) Begin(int) (io.Writer, error) { return nil, errors.New("disk full") }
func (failingSink) End(int, Artifact) error      { return nil }

// TestAnswersLeaveConnectionReusable: an answer the client refuses, or
// stops reading, with a small rest still leaves its connection to the next
// request, so each sequence below opens one connection.
func TestAnswersLeaveConnectionReusable(t *testing.T) {
	img := fakeImage("png", 1, 3000)
	v1 := func(c *Client, sink Sink) error {
		_, err := c.TextToImage(context.Background(), "eng", TextToImageRequest{}, sink)
		return err
	}
	poll := func(c *Client, sink Sink) error {
		_, _, err := c.Result(context.Background(), "gen-1", sink)
		return err
	}
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter)
		call   func(c *Client, sink Sink) error
		sink   Sink
	}{
		{"image", func(w http.ResponseWriter) { answerPNG(w, img) }, v1, &discardSink{}},
		{"429", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"id":"x","name":"rate_limit_exceeded","message":"slow down"}`)
		}, v1, &discardSink{}},
		{"500", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "upstream failed")
		}, v1, &discardSink{}},
		{"200 of the wrong type", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html><body>a proxy's page</body></html>")
		}, v1, &discardSink{}},
		{"image the sink refuses", func(w http.ResponseWriter) { answerPNG(w, img) }, v1, failingSink{}},
		{"poll in progress", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"id":"gen-1","status":"in-progress"}`)
		}, poll, &discardSink{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, conns := connCounter(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				tt.answer(w)
			})
			c, err := NewClient(Options{BaseURL: srv.URL, APIKey: testKey})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				_ = tt.call(c, tt.sink) // the answer decides the error; the connection is what is checked
			}
			if got := conns.Load(); got != 1 {
				t.Errorf("3 requests opened %d connections, want 1", got)
			}
		})
	}
}

// BenchmarkAnswerBuffers streams answers through a fake transport, so that
// B/op counts the client's own allocations per request: the copy and read
// buffers come from the client's pool, not 32 KiB (raw) or 96 KiB (JSON)
// per answer.
func BenchmarkAnswerBuffers(b *testing.B) {
	img := fakeImage("png", 1, 25<<10) // the size of a sandbox image
	raw := func() *http.Response {
		h := http.Header{"Content-Type": {"image/png"}, "Seed": {"1"}, "Finish-Reason": {FinishSuccess}}
		return &http.Response{StatusCode: http.StatusOK, Header: h, Body: io.NopCloser(bytes.NewReader(img)), ContentLength: int64(len(img))}
	}
	body := artifactsBody([][]byte{img, img}, []uint32{1, 2}, []string{FinishSuccess, FinishSuccess}, 1, "")
	jsonAnswer := func() *http.Response {
		h := http.Header{"Content-Type": {"application/json"}}
		return &http.Response{StatusCode: http.StatusOK, Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
	}
	tests := []struct {
		name    string
		answer  func() *http.Response
		samples int
	}{
		{"raw", raw, 1},
		{"json", jsonAnswer, 2},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				io.Copy(io.Discard, r.Body)
				return tt.answer(), nil
			})
			c, err := NewClient(Options{BaseURL: "http://127.0.0.1:1", APIKey: testKey, HTTPClient: &http.Client{Transport: rt}})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.TextToImage(b.Context(), "eng", TextToImageRequest{Samples: tt.samples}, &discardSink{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
