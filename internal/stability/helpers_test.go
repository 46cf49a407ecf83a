package stability

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// fakeImage returns n ≥ 16 deterministic bytes that start like an image of
// format ("png", "jpeg" or "webp"), so that sniffing takes them for one.
func fakeImage(format string, i, n int) []byte {
	b := testImage(i, n)
	switch format {
	case "png":
		copy(b, "\x89PNG\r\n\x1a\n")
	case "jpeg":
		copy(b, "\xff\xd8\xff\xe0")
	case "webp":
		copy(b, "RIFF")
		binary.LittleEndian.PutUint32(b[4:], uint32(n-8))
		copy(b[8:], "WEBPVP8L")
	default:
		panic("fakeImage: format " + format)
	}
	return b
}

// writeFile writes data to a new file in a test directory and returns its
// path.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sentPart is one part of a multipart/form-data request, as the server saw
// it.
type sentPart struct {
	Name, FileName, ContentType string
	Data                        string // a value, or a file's bytes
}

// readForm reads a multipart/form-data request as a server does, part by
// part, and checks that the body has the Content-Length announced.
func readForm(r *http.Request) ([]sentPart, error) {
	cr := &countingReader{r: r.Body}
	r.Body = io.NopCloser(cr)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, err
	}
	var parts []sentPart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return parts, err
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return parts, err
		}
		ct := p.Header.Get("Content-Type")
		if p.FileName() == "" {
			ct = "" // a form value: multipart reports no type
		}
		parts = append(parts, sentPart{Name: p.FormName(), FileName: p.FileName(), ContentType: ct, Data: string(data)})
	}
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return parts, err
	}
	if cr.n != r.ContentLength {
		return parts, fmt.Errorf("body of %d bytes, Content-Length %d", cr.n, r.ContentLength)
	}
	return parts, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// answerImage writes a raw Stable Image answer.
func answerImage(w http.ResponseWriter, format string, img []byte, seed, reason, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "image/"+format)
	if seed != "" {
		h.Set("Seed", seed)
	}
	if reason != "" {
		h.Set("Finish-Reason", reason)
	}
	if requestID != "" {
		h.Set("X-Request-Id", requestID)
	}
	w.Write(img)
}

// imageJSON builds a JSON Stable Image answer; seed "" leaves it out.
func imageJSON(img []byte, seed, reason string) string {
	s := `{"image":"` + base64.StdEncoding.EncodeToString(img) + `","finish_reason":"` + reason + `"`
	if seed != "" {
		s += `,"seed":` + seed
	}
	return s + "}"
}

// fakeFile is an image input that is not on disk: Stat reports size, Read
// reads r. Reads that fail, or end short of size, test what happens when an
// input breaks while it is being sent.
type fakeFile struct {
	r      io.Reader
	size   int64
	closed atomic.Bool
}

func (f *fakeFile) Stat() (fs.FileInfo, error) { return fakeInfo{f.size}, nil }
func (f *fakeFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *fakeFile) Close() error {
	f.closed.Store(true)
	return nil
}

type fakeInfo struct{ size int64 }

func (i fakeInfo) Name() string       { return "fake.png" }
func (i fakeInfo) Size() int64        { return i.size }
func (i fakeInfo) Mode() fs.FileMode  { return 0o644 }
func (i fakeInfo) ModTime() time.Time { return time.Time{} }
func (i fakeInfo) IsDir() bool        { return false }
func (i fakeInfo) Sys() any           { return nil }

// openFake makes c open f whatever the path.
func openFake(c *Client, f *fakeFile) {
	c.open = func(string) (fs.File, error) { return f, nil }
}

// trackFiles makes c count the files it opens and closes, and fails the test
// at its end when one was left open.
func trackFiles(t *testing.T, c *Client) {
	t.Helper()
	var open atomic.Int32
	next := c.open
	c.open = func(name string) (fs.File, error) {
		f, err := next(name)
		if err != nil {
			return nil, err
		}
		open.Add(1)
		return &trackedFile{File: f, open: &open}, nil
	}
	t.Cleanup(func() {
		if n := open.Load(); n != 0 {
			t.Errorf("%d input files left open", n)
		}
	})
}

type trackedFile struct {
	fs.File
	open *atomic.Int32
	once sync.Once
}

func (f *trackedFile) Close() error {
	f.once.Do(func() { f.open.Add(-1) })
	return f.File.Close()
}
