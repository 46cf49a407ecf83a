package stability

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"testing"
	"testing/synctest"
	"time"
)

// roundTripFunc is a fake transport.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// step is one thing a fake server does: wait, then (for an answer body)
// send data.
type step struct {
	wait time.Duration
	data string
}

// slowBody is an answer body that plays steps and then ends, or, with
// hang, blocks until the request's context is done.
type slowBody struct {
	ctx   context.Context
	steps []step
	hang  bool
}

func (b *slowBody) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil { // as a real transport's body does
		return 0, err
	}
	if len(b.steps) == 0 {
		if b.hang {
			<-b.ctx.Done()
			return 0, b.ctx.Err()
		}
		return 0, io.EOF
	}
	s := &b.steps[0]
	if s.wait > 0 {
		t := time.NewTimer(s.wait)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return 0, b.ctx.Err()
		case <-t.C:
		}
		s.wait = 0
	}
	n := copy(p, s.data)
	if s.data = s.data[n:]; s.data == "" {
		b.steps = b.steps[1:]
	}
	return n, nil
}

func (b *slowBody) Close() error { return nil }

// fakeServer describes a fake transport's behaviour: how it reads the
// request (sendReads: wait before each byte of the first bytes; then the
// rest at once, unless sendHang), when it answers (ttfb, or never with
// ttfbHang), and the answer body's steps.
type fakeServer struct {
	sendReads []time.Duration
	sendHang  bool
	ttfb      time.Duration
	ttfbHang  bool
	body      []step
	bodyHang  bool
}

// sleepCtx waits d in the bubble's clock, or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (f fakeServer) transport() http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		ctx := r.Context()
		if r.Body != nil {
			var one [1]byte
			for _, d := range f.sendReads {
				if err := sleepCtx(ctx, d); err != nil {
					return nil, err
				}
				if _, err := r.Body.Read(one[:]); err != nil {
					return nil, err
				}
			}
			if f.sendHang {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return nil, err
			}
		}
		if tr := httptrace.ContextClientTrace(ctx); tr != nil && tr.WroteRequest != nil {
			tr.WroteRequest(httptrace.WroteRequestInfo{})
		}
		if f.ttfbHang {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		if err := sleepCtx(ctx, f.ttfb); err != nil {
			return nil, err
		}
		h := http.Header{}
		h.Set("Content-Type", "image/png")
		h.Set("Seed", "1")
		h.Set("Finish-Reason", "SUCCESS")
		return &http.Response{StatusCode: 200, Header: h, ContentLength: -1,
			Body: &slowBody{ctx: ctx, steps: f.body, hang: f.bodyHang}, Request: r}, nil
	})
}

// slowSink is a memSink whose writes take wait of the bubble's clock, as a
// slow disk would.
type slowSink struct {
	*memSink
	wait time.Duration
}

func (s slowSink) Begin(i int) (io.Writer, error) {
	w, err := s.memSink.Begin(i)
	if err != nil {
		return nil, err
	}
	return writerFunc(func(p []byte) (int, error) {
		time.Sleep(s.wait) // fake time in the bubble: the disk's slowness
		return w.Write(p)
	}), nil
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestQuietServerLimits(t *testing.T) {
	const ttfb, stall = 180 * time.Second, 60 * time.Second
	png := "\x89PNG\r\n\x1a\n-image-bytes"
	tests := []struct {
		name      string
		server    fakeServer
		sinkWait  time.Duration
		wantStage string // "" = success
		wantSent  bool
		wantAfter time.Duration // when the call returns, on the bubble's clock
	}{
		{
			name:      "no answer: time-to-first-byte limit",
			server:    fakeServer{ttfbHang: true},
			wantStage: "the first byte of the answer", wantSent: true, wantAfter: ttfb,
		},
		{
			name:      "a slow answer within the limit",
			server:    fakeServer{ttfb: ttfb - time.Second, body: []step{{0, png}}},
			wantAfter: ttfb - time.Second,
		},
		{
			name:      "answer stalls after its first bytes",
			server:    fakeServer{ttfb: time.Second, body: []step{{0, png[:4]}}, bodyHang: true},
			wantStage: "the rest of the answer", wantSent: true, wantAfter: time.Second + stall,
		},
		{
			name: "answer trickles: each read within the stall limit",
			server: fakeServer{body: []step{
				{stall - time.Second, png[:2]}, {stall - time.Second, png[2:4]}, {stall - time.Second, png[4:]},
			}},
			wantAfter: 3 * (stall - time.Second),
		},
		{
			name:      "a slow disk between reads does not count",
			server:    fakeServer{body: []step{{0, png[:4]}, {0, png[4:]}}},
			sinkWait:  2 * stall,
			wantAfter: 4 * stall, // two writes
		},
		{
			name:      "request stalls while being sent",
			server:    fakeServer{sendReads: []time.Duration{0}, sendHang: true},
			wantStage: "sending the request", wantSent: false, wantAfter: stall,
		},
		{
			name:      "request sent slowly: each chunk restarts the stall limit",
			server:    fakeServer{sendReads: []time.Duration{stall - time.Second, stall - time.Second, stall - time.Second}, body: []step{{0, png}}},
			wantAfter: 3 * (stall - time.Second),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, err := NewClient(Options{BaseURL: "https://api.example", APIKey: testKey,
					HTTPClient: &http.Client{Transport: tt.server.transport()}})
				if err != nil {
					t.Fatal(err)
				}
				if c.ttfb != ttfb || c.stall != stall {
					t.Fatalf("default limits = %v, %v, want %v, %v", c.ttfb, c.stall, ttfb, stall)
				}
				sink := slowSink{memSink: newMemSink(), wait: tt.sinkWait}
				start := time.Now()
				_, err = c.TextToImage(t.Context(), "eng", TextToImageRequest{}, sink)
				if got := time.Since(start); got != tt.wantAfter {
					t.Errorf("returned after %v, want %v", got, tt.wantAfter)
				}
				if tt.wantStage == "" {
					if err != nil {
						t.Fatalf("TextToImage: %v", err)
					}
					if got := string(sink.images[0]); got != png {
						t.Errorf("image = %q, want %q", got, png)
					}
					return
				}
				te, ok := errors.AsType[*TransportError](err)
				if !ok {
					t.Fatalf("error = %v, want *TransportError", err)
				}
				to, ok := errors.AsType[*TimeoutError](err)
				if !ok {
					t.Fatalf("error = %v, want a *TimeoutError in it", err)
				}
				wantLimit := stall
				if tt.wantStage == "the first byte of the answer" {
					wantLimit = ttfb
				}
				if te.Sent != tt.wantSent || to.Stage != tt.wantStage || to.Limit != wantLimit {
					t.Errorf("error = %v (sent %v, stage %q, limit %v), want sent %v, stage %q, limit %v",
						err, te.Sent, to.Stage, to.Limit, tt.wantSent, tt.wantStage, wantLimit)
				}
				wantClass := ClassNotSent
				if tt.wantSent {
					wantClass = ClassUnknown
				}
				if got := Classify(err); got != wantClass {
					t.Errorf("Classify = %v, want %v", got, wantClass)
				}
				if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
					t.Errorf("error %v reads as a context error", err)
				}
			})
		})
	}
}

// TestQuietServerEveryRequest checks that polls and balance requests are
// bounded as image requests are, with the limits given in Options.
func TestQuietServerEveryRequest(t *testing.T) {
	const ttfb, stall = 7 * time.Second, 3 * time.Second
	calls := []struct {
		name string
		call func(context.Context, *Client) error
	}{
		{"balance", func(ctx context.Context, c *Client) error { _, err := c.Balance(ctx); return err }},
		{"result", func(ctx context.Context, c *Client) error {
			_, _, err := c.Result(ctx, genID, newMemSink())
			return err
		}},
		{"stable image", func(ctx context.Context, c *Client) error {
			_, err := c.StableImage(ctx, "generate/core", []Field{{Name: "prompt", Value: "p"}}, newMemSink())
			return err
		}},
	}
	for _, tc := range calls {
		for _, server := range []fakeServer{{ttfbHang: true}, {body: []step{{0, "{"}}, bodyHang: true}} {
			t.Run(tc.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					c, err := NewClient(Options{BaseURL: "https://api.example", APIKey: testKey, TTFBTimeout: ttfb, StallTimeout: stall,
						HTTPClient: &http.Client{Transport: server.transport()}})
					if err != nil {
						t.Fatal(err)
					}
					start := time.Now()
					err = tc.call(t.Context(), c)
					want := ttfb
					if !server.ttfbHang {
						want = stall
					}
					to, ok := errors.AsType[*TimeoutError](err)
					if !ok || to.Limit != want || time.Since(start) != want {
						t.Errorf("error = %v after %v, want a *TimeoutError after %v", err, time.Since(start), want)
					}
				})
			})
		}
	}
}

func TestQuietServerParentContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := NewClient(Options{BaseURL: "https://api.example", APIKey: testKey,
			HTTPClient: &http.Client{Transport: fakeServer{ttfbHang: true}.transport()}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err = c.Balance(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error = %v, want the caller's deadline, not a limit of the client", err)
		}
	})
}

// TestQuietServerOnTheWire checks the limits with the real transport, which
// must abort a blocked read when the watchdog cancels: the handlers block
// on a channel until the test ends, so only the client's limits end them.
func TestQuietServerOnTheWire(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		headers   bool // send headers and a first part of the body, then block
		wantStage string
	}{
		{"no headers", Options{TTFBTimeout: 50 * time.Millisecond, StallTimeout: time.Minute}, false, "the first byte of the answer"},
		{"stalled body", Options{TTFBTimeout: time.Minute, StallTimeout: 50 * time.Millisecond}, true, "the rest of the answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if tt.headers {
					w.Header().Set("Content-Type", "image/png")
					w.Header().Set("Seed", "1")
					w.Header().Set("Finish-Reason", "SUCCESS")
					w.Write([]byte("\x89PNG"))
					http.NewResponseController(w).Flush()
				}
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}))
			defer srv.Close()
			defer close(release)
			o := tt.opts
			o.BaseURL, o.APIKey = srv.URL, testKey
			c, err := NewClient(o)
			if err != nil {
				t.Fatal(err)
			}
			sink := newMemSink()
			_, err = c.TextToImage(t.Context(), "eng", TextToImageRequest{}, sink)
			te, ok := errors.AsType[*TransportError](err)
			to, ok2 := errors.AsType[*TimeoutError](err)
			if !ok || !ok2 || !te.Sent || to.Stage != tt.wantStage {
				t.Fatalf("error = %v, want an outcome-unknown *TransportError with a *TimeoutError at %q", err, tt.wantStage)
			}
			if tt.headers && (len(sink.images) != 1 || !bytes.Equal(sink.images[0], []byte("\x89PNG"))) {
				t.Errorf("sink got %q before the stall, want the first bytes", sink.images)
			}
		})
	}
}
