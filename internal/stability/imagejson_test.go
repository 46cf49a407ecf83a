package stability

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// bufSink is a begin func that writes the image into a buffer and counts
// its calls.
type bufSink struct {
	buf    bytes.Buffer
	begins int
}

func (s *bufSink) begin() (io.Writer, error) {
	s.begins++
	return &s.buf, nil
}

func TestScanImageShapes(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		image string
		want  Artifact
	}{
		{"spec order", `{"image":"aGVsbG8=","seed":343940597,"finish_reason":"SUCCESS"}`, "hello", Artifact{Seed: 343940597, FinishReason: FinishSuccess}},
		{"metadata first, whitespace", " {\n\t\"finish_reason\" : \"CONTENT_FILTERED\" ,\r\n \"seed\":0, \"image\" : \"aGVsbG8=\" }\n", "hello", Artifact{FinishReason: FinishContentFiltered}},
		{"escapes and line breaks in base64", `{"im\u0061ge":"aGVsbG8\/d29y\nbGQ=\r\n","finish_reason":"\u0045RROR","seed":1}`, "hello?world", Artifact{Seed: 1, FinishReason: FinishError}},
		{"unknown keys skipped", `{"id":"x","image":"","meta":{"a":[1,true,null,"\""]},"seed":2,"finish_reason":"SUCCESS","z":-1.5e3}`, "", Artifact{Seed: 2, FinishReason: FinishSuccess}},
		{"no seed when not needed", `{"image":"YQ==","finish_reason":"SUCCESS"}`, "a", Artifact{FinishReason: FinishSuccess}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s bufSink
			a, err := scanImage(iotest.OneByteReader(strings.NewReader(tt.body)), s.begin, tt.name != "no seed when not needed", newRedactor(testKey), new(buffers))
			if err != nil {
				t.Fatalf("scanImage: %v", err)
			}
			if a != tt.want || s.buf.String() != tt.image || s.begins != 1 {
				t.Errorf("scanImage = %+v %q (%d begins), want %+v %q (1 begin)", a, s.buf.String(), s.begins, tt.want, tt.image)
			}
		})
	}
}

func TestScanImageReadError(t *testing.T) {
	errRead := errors.New("connection reset")
	body := imageJSON(testImage(0, 3000), "1", "SUCCESS")
	for _, cut := range []int{0, 5, 20, 200, len(body) - 2} {
		var s bufSink
		_, err := scanImage(iotest.DataErrReader(&errAfter{b: []byte(body[:cut]), err: errRead}), s.begin, true, newRedactor(testKey), new(buffers))
		if !errors.Is(err, errRead) {
			t.Errorf("cut at %d: error = %v, want the read error", cut, err)
		}
	}
}

// FuzzScanImage checks, for any input, that the scanner does not panic,
// begins the image at most once, and accepts only bodies that
// encoding/json also reads to the same image, seed and finish reason.
func FuzzScanImage(f *testing.F) {
	f.Add([]byte(imageJSON([]byte("png"), "1", "SUCCESS")))
	f.Add([]byte(`{"finish_reason":"CONTENT_FILTERED","x":[{"y":null}],"image":"aGVsbG8\/d29y\nbGQ=","seed":0}`))
	f.Add([]byte(`{"image":"YQ==YQ==","seed":1,"finish_reason":"SUCCESS"}`))
	f.Add([]byte(`{"image":"","image":"","seed":1,"finish_reason":"SUCCESS"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var s bufSink
		a, err := scanImage(bytes.NewReader(body), s.begin, true, newRedactor(testKey), new(buffers))
		if s.begins > 1 {
			t.Fatalf("begin called %d times", s.begins)
		}
		if err != nil {
			return
		}
		var doc struct {
			Image        *[]byte `json:"image"`
			Seed         *uint32 `json:"seed"`
			FinishReason string  `json:"finish_reason"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("scanner accepted a body encoding/json rejects: %v", err)
		}
		if doc.Image == nil || doc.Seed == nil {
			t.Fatalf("scanner accepted a body without image or seed")
		}
		if !bytes.Equal(*doc.Image, s.buf.Bytes()) || *doc.Seed != a.Seed || doc.FinishReason != a.FinishReason {
			t.Fatalf("scanner %+v %x, encoding/json {%d %s} %x", a, s.buf.Bytes(), *doc.Seed, doc.FinishReason, *doc.Image)
		}
	})
}
