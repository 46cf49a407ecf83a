package stability

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestTextToImagePNG(t *testing.T) {
	img := testImage(1, 100_000)
	var gotPath string
	var gotBody TextToImageRequest
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.Method + " " + r.URL.Path
		if err := json.NewDecoder(r.Body).Decode(&gotBody); err != nil {
			t.Errorf("request body: %v", err)
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Seed", "4294967295")
		w.Header().Set("Finish-Reason", "CONTENT_FILTERED")
		w.Header().Set("X-Request-Id", "7f3c2a.b_1:x-9")
		w.Write(img)
	})
	req := TextToImageRequest{TextPrompts: []TextPrompt{{Text: "a cat", Weight: 1}}, Width: 1024, Height: 1024, Steps: 30, Seed: 7}
	sink := newMemSink()
	arts, err := c.TextToImage(t.Context(), "stable-diffusion-xl-1024-v1-0", req, sink)
	if err != nil {
		t.Fatalf("TextToImage: %v", err)
	}
	if sink.err != nil {
		t.Fatalf("sink contract: %v", sink.err)
	}
	if want := "POST /v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image"; gotPath != want {
		t.Errorf("request = %q, want %q", gotPath, want)
	}
	if !reflect.DeepEqual(gotBody, req) {
		t.Errorf("server decoded %+v, want %+v", gotBody, req)
	}
	want := []Artifact{{Seed: 4294967295, FinishReason: FinishContentFiltered, RequestID: "7f3c2a.b_1:x-9", Format: "png"}}
	if !reflect.DeepEqual(arts, want) || !reflect.DeepEqual(sink.arts, want) {
		t.Errorf("artifacts = %+v (sink %+v), want %+v", arts, sink.arts, want)
	}
	if len(sink.images) != 1 || !bytes.Equal(sink.images[0], img) {
		t.Errorf("sink got %d images, want the %d-byte PNG", len(sink.images), len(img))
	}
	if got := strings.Join(sink.calls, ","); got != "begin 0,end 0" {
		t.Errorf("sink calls = %s, want begin 0,end 0", got)
	}
}

func TestTextToImagePNGBadHeaders(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		want   string
	}{
		{"no seed", map[string]string{"Finish-Reason": "SUCCESS"}, "no Seed header"},
		{"seed too big", map[string]string{"Seed": "4294967296", "Finish-Reason": "SUCCESS"}, `Seed header "4294967296"`},
		{"negative seed", map[string]string{"Seed": "-1", "Finish-Reason": "SUCCESS"}, `Seed header "-1"`},
		{"no finish reason", map[string]string{"Seed": "1"}, `Finish-Reason header ""`},
		{"unknown finish reason", map[string]string{"Seed": "1", "Finish-Reason": "success"}, `Finish-Reason header "success"`},
		{"json instead of png", map[string]string{"Seed": "1", "Finish-Reason": "SUCCESS", "Content-Type": "application/json"}, `Content-Type "application/json", want image/png`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.Write([]byte("\x89PNG"))
			})
			sink := newMemSink()
			_, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{}, sink)
			if !errors.Is(err, ErrMalformedResponse) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("TextToImage error = %v, want ErrMalformedResponse containing %q", err, tt.want)
			}
			if len(sink.calls) != 0 {
				t.Errorf("sink calls = %v, want none before the headers are checked", sink.calls)
			}
		})
	}
}

func TestTextToImageJSON(t *testing.T) {
	const n = 4
	images := make([][]byte, n)
	for i := range images {
		images[i] = testImage(i, 5000+i*977) // lengths with every padding
	}
	seeds := []uint32{0, 1, 1050625087, 4294967295}
	reasons := []string{FinishSuccess, FinishContentFiltered, FinishContentFiltered, FinishSuccess}
	for order := range 6 {
		for _, sep := range []string{"", " ", "\n\t", " \r\n  "} {
			body := artifactsBody(images, seeds, reasons, order, sep)
			t.Run("", func(t *testing.T) {
				c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
					if got := r.Header.Get("Accept"); got != "application/json" {
						t.Errorf("Accept = %q, want application/json", got)
					}
					w.Header().Set("Content-Type", "application/json; charset=utf-8")
					w.Header().Set("X-Request-Id", "a0b1c2")
					w.Write(body)
				})
				sink := newMemSink()
				arts, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{Samples: n}, sink)
				if err != nil {
					t.Fatalf("order %d sep %q: TextToImage: %v", order, sep, err)
				}
				if sink.err != nil {
					t.Fatalf("sink contract: %v", sink.err)
				}
				for i := range n {
					want := Artifact{Seed: seeds[i], FinishReason: reasons[i], RequestID: "a0b1c2", Format: "png"}
					if arts[i] != want || sink.arts[i] != want {
						t.Errorf("order %d sep %q: artifact %d = %+v (sink %+v), want %+v", order, sep, i, arts[i], sink.arts[i], want)
					}
					if !bytes.Equal(sink.images[i], images[i]) {
						t.Errorf("order %d sep %q: image %d differs (%d bytes, want %d)", order, sep, i, len(sink.images[i]), len(images[i]))
					}
				}
			})
		}
	}
}

func TestTextToImageJSONMalformed(t *testing.T) {
	img := base64.StdEncoding.EncodeToString([]byte("png"))
	art := func(seed, reason string) string {
		return `{"base64":"` + img + `","seed":` + seed + `,"finishReason":"` + reason + `"}`
	}
	two := `{"artifacts":[` + art("1", "SUCCESS") + "," + art("2", "SUCCESS") + `]}`
	tests := []struct {
		name    string
		samples int
		body    string
		want    string
	}{
		{"fewer artifacts", 3, two, "2 artifacts, want 3"},
		{"more artifacts", 1 + 1, `{"artifacts":[` + art("1", "SUCCESS") + "," + art("2", "SUCCESS") + "," + art("3", "SUCCESS") + `]}`, "more than the 2 artifacts requested"},
		{"no artifacts key", 2, `{"result":"ok"}`, `no "artifacts"`},
		{"artifacts null", 2, `{"artifacts":null}`, "not an array"},
		{"bare array", 2, `[` + art("1", "SUCCESS") + `]`, `unexpected '['`},
		{"missing seed", 2, `{"artifacts":[{"base64":"` + img + `","finishReason":"SUCCESS"},` + art("2", "SUCCESS") + `]}`, "artifact 0 has no seed"},
		{"seed null", 2, `{"artifacts":[` + art("null", "SUCCESS") + "," + art("2", "SUCCESS") + `]}`, "unexpected 'n'"},
		{"seed float", 2, `{"artifacts":[` + art("1.5", "SUCCESS") + "," + art("2", "SUCCESS") + `]}`, `seed "1.5" is not`},
		{"seed negative", 2, `{"artifacts":[` + art("1", "SUCCESS") + "," + art("-2", "SUCCESS") + `]}`, `artifact 1: seed "-2" is not`},
		{"seed too big", 2, `{"artifacts":[` + art("4294967296", "SUCCESS") + "," + art("2", "SUCCESS") + `]}`, `seed "4294967296" is not`},
		{"unknown finish reason", 2, `{"artifacts":[` + art("1", "SUCCESS") + "," + art("2", "FILTERED") + `]}`, `artifact 1: unknown finishReason "FILTERED"`},
		{"missing finish reason", 2, `{"artifacts":[{"base64":"","seed":1},` + art("2", "SUCCESS") + `]}`, "artifact 0 has no finishReason"},
		{"missing image", 2, `{"artifacts":[{"seed":1,"finishReason":"SUCCESS"},` + art("2", "SUCCESS") + `]}`, "artifact 0 has no base64 image"},
		{"bad base64", 2, `{"artifacts":[{"base64":"a$b=","seed":1,"finishReason":"SUCCESS"},` + art("2", "SUCCESS") + `]}`, "artifact 0: base64: illegal base64 data"},
		{"base64 cut mid-quantum", 2, `{"artifacts":[{"base64":"YWJj` + "YQ" + `","seed":1,"finishReason":"SUCCESS"},` + art("2", "SUCCESS") + `]}`, "artifact 0: base64: length % 4 is not 0"},
		{"duplicate seed", 2, `{"artifacts":[{"base64":"","seed":1,"seed":2,"finishReason":"SUCCESS"},` + art("2", "SUCCESS") + `]}`, `artifact 0: duplicate key "seed"`},
		{"truncated", 2, two[:len(two)-3], "body ends in the middle"},
		{"trailing data", 2, two + `{}`, "after the response object"},
		{"html", 2, `<html>`, `unexpected '<'`},
		{"png instead of json", 2, "\x89PNG\r\n\x1a\n", `Content-Type "image/png", want application/json`},
		{"empty", 2, ``, "body ends in the middle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, tt.body)
			})
			sink := newMemSink()
			_, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{Samples: tt.samples}, sink)
			if !errors.Is(err, ErrMalformedResponse) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("TextToImage error = %v, want ErrMalformedResponse containing %q", err, tt.want)
			}
			if sink.err != nil {
				t.Errorf("sink contract: %v", sink.err)
			}
			if len(sink.images) > tt.samples {
				t.Errorf("sink saw %d images, more than the %d requested", len(sink.images), tt.samples)
			}
		})
	}
}

func TestTextToImageSinkErrors(t *testing.T) {
	errSink := errors.New("disk full")
	tests := []struct {
		name    string
		samples int
		setup   func(*memSink)
	}{
		{"png begin", 1, func(s *memSink) { s.beginErr = errSink }},
		{"png end", 1, func(s *memSink) { s.endErr = errSink }},
		{"json begin", 2, func(s *memSink) { s.beginErr = errSink }},
		{"json end", 2, func(s *memSink) { s.endErr = errSink }},
	}
	body := artifactsBody([][]byte{[]byte("a"), []byte("b")}, []uint32{1, 2}, []string{"SUCCESS", "SUCCESS"}, 0, "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Seed", "1")
				w.Header().Set("Finish-Reason", "SUCCESS")
				w.Write(body)
			})
			sink := newMemSink()
			tt.setup(sink)
			_, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{Samples: tt.samples}, sink)
			if !errors.Is(err, errSink) {
				t.Fatalf("TextToImage error = %v, want the sink's error", err)
			}
			if errors.Is(err, ErrMalformedResponse) {
				t.Errorf("a sink error is reported as a malformed response: %v", err)
			}
			if want := "text-to-image eng: artifact 0: disk full"; err.Error() != want {
				t.Errorf("error = %q, want %q", err, want)
			}
		})
	}
}

func TestTextToImageCancelMidBody(t *testing.T) {
	for _, samples := range []int{1, 3} {
		t.Run("", func(t *testing.T) {
			first := []byte(`{"artifacts":[{"base64":"` + strings.Repeat("QUFB", 20000))
			if samples == 1 {
				first = testImage(0, 80000)
			}
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Seed", "5")
				w.Header().Set("Finish-Reason", "SUCCESS")
				w.Write(first)
				http.NewResponseController(w).Flush()
				<-r.Context().Done() // the rest never comes
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			sink := newMemSink()
			sink.writeHook = func(int) { cancel() } // cancel once bytes are flowing
			_, err := c.TextToImage(ctx, "eng", TextToImageRequest{Samples: samples}, sink)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("samples %d: TextToImage error = %v, want context.Canceled", samples, err)
			}
			te, ok := errors.AsType[*TransportError](err)
			if !ok || !te.Sent {
				t.Errorf("samples %d: error = %v, want *TransportError with Sent", samples, err)
			}
			if len(sink.images) == 0 || len(sink.images[0]) == 0 {
				t.Errorf("samples %d: the sink got no bytes before the cancel", samples)
			}
		})
	}
}

func TestTextToImageBadArguments(t *testing.T) {
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TextToImage(t.Context(), "", TextToImageRequest{}, newMemSink()); err == nil {
		t.Error("TextToImage with an empty engine = nil error, want one")
	}
	if _, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{}, nil); err == nil {
		t.Error("TextToImage with a nil sink = nil error, want one")
	}
}

func TestEngineIsPathEscaped(t *testing.T) {
	var got string
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.EscapedPath()
		w.WriteHeader(404)
	})
	c.TextToImage(t.Context(), "a/../b?x", TextToImageRequest{}, newMemSink())
	if want := "/v1/generation/a%2F..%2Fb%3Fx/text-to-image"; got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
}
