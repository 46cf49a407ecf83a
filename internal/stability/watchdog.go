package stability

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// Defaults of the Options limits on a quiet server.
const (
	// DefaultTTFBTimeout is Options.TTFBTimeout when zero. The synchronous
	// Stable Image services send nothing until the image is ready: live
	// Ultra image-to-image and edit calls took 12–35 s before the first
	// byte and a creative upscale 45 s, so 180 s leaves room for a slow day
	// without waiting on a dead connection for the whole attempt.
	DefaultTTFBTimeout = 180 * time.Second
	// DefaultStallTimeout is Options.StallTimeout when zero: a minute
	// without a byte, once bytes flow, is a connection that has died.
	DefaultStallTimeout = 60 * time.Second
)

// TimeoutError reports a request cut short because the server went quiet.
// It comes as the Err of a *TransportError, whose Sent tells whether the
// outcome is unknown: a request that stalled while being sent never
// reached the server whole; one without an answer, or whose answer
// stalled, may have been done and billed.
type TimeoutError struct {
	// Stage is what was waited for: "sending the request" (connecting
	// included), "the first byte of the answer" or "the rest of the
	// answer".
	Stage string
	// Limit is the limit that ran out: Options.StallTimeout, or
	// Options.TTFBTimeout for the first byte.
	Limit time.Duration
}

func (e *TimeoutError) Error() string {
	if e.Stage == firstByte.String() {
		return fmt.Sprintf("no answer within %v of sending the request (time-to-first-byte limit)", e.Limit)
	}
	return fmt.Sprintf("stalled: no progress for %v while waiting for %s (stall limit)", e.Limit, e.Stage)
}

// Timeout reports true, as a net.Error does for a timeout.
func (e *TimeoutError) Timeout() bool { return true }

// stage is where a request is, in order; the watchdog only moves forward.
type stage int

const (
	sending   stage = iota // connecting and writing the request
	firstByte              // sent, waiting for the answer's headers
	reading                // reading the answer's body
)

// String is the stage as TimeoutError.Stage names it.
func (s stage) String() string {
	switch s {
	case sending:
		return "sending the request"
	case firstByte:
		return "the first byte of the answer"
	}
	return "the rest of the answer"
}

// watchdog cancels a request whose server goes quiet. While the request is
// connecting and being sent, every chunk the transport takes of the body
// restarts the stall limit; once it is sent, the answer's headers must come
// within the time-to-first-byte limit; while the caller reads the answer,
// every read must bring bytes within the stall limit (time spent between
// reads, writing to disk, does not count). It is safe for concurrent use:
// the transport reads the body and reports the request written on its own
// goroutines.
type watchdog struct {
	ttfb, stall time.Duration
	cancel      context.CancelCauseFunc

	mu    sync.Mutex
	timer *time.Timer
	stage stage
	err   *TimeoutError
	done  bool
}

// newWatchdog returns a context for the request, derived from ctx, and the
// watchdog that cancels it; the stall limit starts at once. The caller must
// call stop when the request is over.
func newWatchdog(ctx context.Context, ttfb, stall time.Duration) (context.Context, *watchdog) {
	rctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{ttfb: ttfb, stall: stall, cancel: cancel}
	w.mu.Lock()
	w.timer = time.AfterFunc(stall, w.fire)
	w.mu.Unlock()
	return rctx, w
}

func (w *watchdog) limit(s stage) time.Duration {
	if s == firstByte {
		return w.ttfb
	}
	return w.stall
}

func (w *watchdog) fire() {
	w.mu.Lock()
	if w.done || w.err != nil {
		w.mu.Unlock()
		return
	}
	w.err = &TimeoutError{Stage: w.stage.String(), Limit: w.limit(w.stage)}
	err := w.err
	w.mu.Unlock()
	w.cancel(err)
}

// enter restarts the clock for stage, unless the request is already past
// it (an early answer while the body is still being sent) or the watchdog
// fired.
func (w *watchdog) enter(s stage) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.err != nil || s < w.stage {
		return
	}
	w.stage = s
	w.timer.Reset(w.limit(s))
}

// idle stops the clock while the caller is not reading the answer.
func (w *watchdog) idle() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && w.err == nil {
		w.timer.Stop()
	}
}

// fired returns the timeout that cancelled the request, or nil.
func (w *watchdog) fired() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		return nil // not a typed nil
	}
	return w.err
}

// stop ends the watchdog and releases the request's context.
func (w *watchdog) stop() {
	w.mu.Lock()
	w.done = true
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(nil)
}

// sendingReader restarts the stall limit each time the transport takes a
// chunk of the request body. Close closes the body when it is an
// io.Closer, as the transport expects of a request body.
type sendingReader struct {
	r io.Reader
	w *watchdog
}

func (s sendingReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.w.enter(sending)
	return n, err
}

func (s sendingReader) Close() error {
	if c, ok := s.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// watchedBody is an answer's body under the stall limit. A read cut short
// by the watchdog returns its *TimeoutError; Close stops the watchdog.
type watchedBody struct {
	rc io.ReadCloser
	w  *watchdog
	// left is the bytes of the body not read yet; -1 when its length is
	// unknown.
	left int64
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.w.enter(reading)
	n, err := b.rc.Read(p)
	if b.left > 0 {
		b.left -= min(int64(n), b.left)
	}
	b.w.idle()
	if err != nil && err != io.EOF {
		if te := b.w.fired(); te != nil {
			err = te
		}
	}
	return n, err
}

// Close first reads the rest of a body whose length is known, when at
// most maxDrain bytes are left (the end of an error message, the newline
// after a JSON value), under the stall limit: a body closed before its end
// closes its connection, and the next request pays for a new one, a TLS
// handshake against the API. A longer rest is not worth the wait, and one
// of unknown length could be endless. Then it closes the body and stops
// the watchdog.
func (b *watchedBody) Close() error {
	if b.left > 0 && b.left <= maxDrain && b.w.fired() == nil {
		_, _ = io.CopyN(io.Discard, b, b.left)
	}
	err := b.rc.Close()
	b.w.stop()
	return err
}
