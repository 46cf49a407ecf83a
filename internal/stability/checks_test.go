package stability

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestFinishReasonErrorFailsTheAttempt(t *testing.T) {
	png := fakeImage("png", 1, 3000)
	b64 := base64.StdEncoding.EncodeToString(png)
	v1 := func(samples int) func(c *Client, sink Sink) error {
		return func(c *Client, sink Sink) error {
			_, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{Samples: samples}, sink)
			return err
		}
	}
	stable := func(c *Client, sink Sink) error {
		_, err := c.StableImage(t.Context(), "generate/core", []Field{{Name: "prompt", Value: "p"}}, sink)
		return err
	}
	result := func(c *Client, sink Sink) error {
		_, _, err := c.Result(t.Context(), genID, sink)
		return err
	}
	tests := []struct {
		name         string
		answer       func(w http.ResponseWriter)
		call         func(c *Client, sink Sink) error
		wantArtifact int
		wantCalls    string // the sink calls made before the error
	}{
		{"v1 png", func(w http.ResponseWriter) { answerImage(w, "png", png, "1", "ERROR", "req-1") }, v1(1), 0, ""},
		{"v1 json, second artifact", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Request-Id", "req-1")
			fmt.Fprintf(w, `{"artifacts":[{"base64":%q,"seed":1,"finishReason":"SUCCESS"},{"base64":%q,"seed":2,"finishReason":"ERROR"}]}`, b64, b64)
		}, v1(2), 1, "begin 0,end 0,begin 1"},
		{"stable image raw", func(w http.ResponseWriter) { answerImage(w, "png", png, "1", "ERROR", "req-1") }, stable, 0, ""},
		{"stable image json", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Request-Id", "req-1")
			io.WriteString(w, imageJSON(png, "1", "ERROR"))
		}, stable, 0, "begin 0"},
		{"result raw", func(w http.ResponseWriter) { answerImage(w, "png", png, "1", "ERROR", "req-1") }, result, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				tt.answer(w)
			})
			sink := newMemSink()
			err := tt.call(c, sink)
			fe, ok := errors.AsType[*FinishReasonError](err)
			if !ok {
				t.Fatalf("error = %v, want *FinishReasonError", err)
			}
			if fe.Artifact != tt.wantArtifact || fe.RequestID != "req-1" {
				t.Errorf("FinishReasonError = %+v, want artifact %d, request id req-1", *fe, tt.wantArtifact)
			}
			if got := Classify(err); got != ClassOther {
				t.Errorf("Classify = %v, want other (answered, maybe billed)", got)
			}
			if got := strings.Join(sink.calls, ","); got != tt.wantCalls {
				t.Errorf("sink calls = %q, want %q: the failed image never ends", got, tt.wantCalls)
			}
		})
	}
}

func TestImageSizeCap(t *testing.T) {
	const limit = 4000
	at := fakeImage("png", 1, limit)
	over := fakeImage("png", 2, limit+1)
	raw := func(img []byte, length bool) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "image/png")
			w.Header().Set("Seed", "1")
			w.Header().Set("Finish-Reason", "SUCCESS")
			if length {
				w.Header().Set("Content-Length", strconv.Itoa(len(img)))
			}
			w.Write(img[:len(img)/2])
			http.NewResponseController(w).Flush() // no Content-Length unless set
			w.Write(img[len(img)/2:])
		}
	}
	jsonImage := func(img []byte, junk int) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"junk":"`+strings.Repeat("x", junk)+`",`+imageJSON(img, "1", "SUCCESS")[1:])
		}
	}
	v1 := func(c *Client, sink *memSink) error {
		_, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{}, sink)
		return err
	}
	stable := func(c *Client, sink *memSink) error {
		_, err := c.StableImage(t.Context(), "generate/core", []Field{{Name: "prompt", Value: "p"}}, sink)
		return err
	}
	tests := []struct {
		name    string
		answer  func(w http.ResponseWriter)
		call    func(c *Client, sink *memSink) error
		want    string // "" = success
		noBegin bool   // refused before the sink sees anything
	}{
		{"v1 at the cap", raw(at, true), v1, "", false},
		{"v1 Content-Length over the cap", raw(over, true), v1, "Content-Length 4001 is over its limit of 4000 bytes", true},
		{"v1 streamed over the cap", raw(over, false), v1, "over the 4000-byte limit", false},
		{"stable image raw over the cap", raw(over, false), stable, "over the 4000-byte limit", false},
		{"stable image json at the cap", jsonImage(at, 0), stable, "", false},
		{"stable image json over the cap", jsonImage(over, 0), stable, "over the 4000-byte limit", false},
		{"stable image json body over its limit", jsonImage(at, 2*limit+1<<20), stable, "the answer is over its limit", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				tt.answer(w)
			})
			c := *srv
			c.maxImage = limit
			sink := newMemSink()
			err := tt.call(&c, sink)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("error = %v, want none", err)
				}
				return
			}
			if !errors.Is(err, ErrMalformedResponse) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want ErrMalformedResponse containing %q", err, tt.want)
			}
			if tt.noBegin && len(sink.calls) > 0 {
				t.Errorf("sink calls = %v, want none", sink.calls)
			}
			for i, img := range sink.images {
				if len(img) > limit {
					t.Errorf("sink image %d got %d bytes, over the cap", i, len(img))
				}
			}
		})
	}
}
