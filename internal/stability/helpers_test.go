package stability

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const testKey = "sk-TESTKEY-0123456789abcdef"

// memSink keeps every image in memory and checks the Sink call order.
type memSink struct {
	images [][]byte
	arts   []Artifact
	calls  []string // "begin 0", "end 0", ...
	open   int      // index begun and not yet ended, or -1
	err    error    // first contract violation by the client

	beginErr, endErr error       // returned by Begin / End when set
	writeHook        func(i int) // called on each Write
}

func newMemSink() *memSink { return &memSink{open: -1} }

func (s *memSink) Begin(i int) (io.Writer, error) {
	s.calls = append(s.calls, fmt.Sprintf("begin %d", i))
	if s.open != -1 || i != len(s.images) {
		s.fail("Begin(%d) with %d begun, open %d", i, len(s.images), s.open)
	}
	if s.beginErr != nil {
		return nil, s.beginErr
	}
	s.open = i
	s.images = append(s.images, nil)
	return sinkWriter{s, i}, nil
}

func (s *memSink) End(i int, a Artifact) error {
	s.calls = append(s.calls, fmt.Sprintf("end %d", i))
	if s.open != i {
		s.fail("End(%d) while %d is open", i, s.open)
	}
	s.open = -1
	s.arts = append(s.arts, a)
	return s.endErr
}

func (s *memSink) fail(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf(format, args...)
	}
}

type sinkWriter struct {
	s *memSink
	i int
}

func (w sinkWriter) Write(p []byte) (int, error) {
	if w.s.open != w.i {
		w.s.fail("Write to %d while %d is open", w.i, w.s.open)
	}
	w.s.images[w.i] = append(w.s.images[w.i], p...)
	if w.s.writeHook != nil {
		w.s.writeHook(w.i)
	}
	return len(p), nil
}

// discardSink counts bytes and keeps nothing.
type discardSink struct{ n int64 }

func (s *discardSink) Begin(int) (io.Writer, error) { return s, nil }
func (s *discardSink) End(int, Artifact) error      { return nil }
func (s *discardSink) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	return len(p), nil
}

// testImage returns n deterministic bytes that differ per index.
func testImage(i, n int) []byte {
	b := make([]byte, n)
	x := uint32(2166136261 + i*7919)
	for j := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[j] = byte(x)
	}
	return b
}

// artifactsBody builds a JSON answer with one artifact per image. order
// picks one of the six key orders per artifact; sep goes around every
// token.
func artifactsBody(images [][]byte, seeds []uint32, reasons []string, order int, sep string) []byte {
	var b bytes.Buffer
	b.WriteString(sep + "{" + sep + `"artifacts"` + sep + ":" + sep + "[" + sep)
	for i, img := range images {
		if i > 0 {
			b.WriteString(sep + "," + sep)
		}
		members := []string{
			`"base64"` + sep + ":" + sep + `"` + base64.StdEncoding.EncodeToString(img) + `"`,
			`"seed"` + sep + ":" + sep + fmt.Sprint(seeds[i]),
			`"finishReason"` + sep + ":" + sep + `"` + reasons[i] + `"`,
		}
		perms := [6][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
		p := perms[(order+i)%6]
		b.WriteString("{" + sep + members[p[0]] + sep + "," + sep + members[p[1]] + sep + "," + sep + members[p[2]] + sep + "}")
	}
	b.WriteString(sep + "]" + sep + "}" + sep)
	return b.Bytes()
}

// newTestClient starts handler on a loopback httptest server and returns a
// client for it.
func newTestClient(t testing.TB, handler http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	c, err := NewClient(Options{BaseURL: srv.URL, APIKey: testKey, ClientVersion: "1.2.3"})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// checkNoSecret fails the test when an error string leaks the key or a URL.
func checkNoSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	if strings.Contains(msg, testKey) || strings.Contains(msg, "http://") || strings.Contains(msg, "https://") {
		t.Errorf("error %q leaks the key or a URL", msg)
	}
}
