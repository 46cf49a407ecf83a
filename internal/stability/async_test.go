package stability

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// genID is a generation id as the API issues them: 64 hex digits.
const genID = "a6dc6c6e20acda010fe14d71f180658f2896ed9b4ec25aa99a6ff06c796987c4"

func TestSubmit(t *testing.T) {
	subject := fakeImage("png", 1, 30_000)
	path := writeFile(t, "subject.png", subject)
	tests := []struct {
		service string
		fields  []Field
		want    []sentPart
	}{
		{
			service: "upscale/creative",
			fields:  []Field{{Name: "image", Value: path}, {Name: "prompt", Value: "sharper"}, {Name: "creativity", Value: "0.25"}, {Name: "output_format", Value: "webp"}},
			want: []sentPart{
				{Name: "image", FileName: "image.png", ContentType: "image/png", Data: string(subject)},
				{Name: "prompt", Data: "sharper"}, {Name: "creativity", Data: "0.25"}, {Name: "output_format", Data: "webp"},
			},
		},
		{
			service: "edit/replace-background-and-relight",
			fields:  []Field{{Name: "subject_image", Value: path}, {Name: "background_prompt", Value: "a beach"}, {Name: "light_source_direction", Value: "left"}},
			want: []sentPart{
				{Name: "subject_image", FileName: "subject_image.png", ContentType: "image/png", Data: string(subject)},
				{Name: "background_prompt", Data: "a beach"}, {Name: "light_source_direction", Data: "left"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			var got []sentPart
			var gotReq, gotAccept string
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				gotReq, gotAccept = r.Method+" "+r.URL.Path, r.Header.Get("Accept")
				var err error
				if got, err = readForm(r); err != nil {
					t.Errorf("server: %v", err)
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"id":"`+genID+`"}`)
			})
			trackFiles(t, c)
			id, err := c.Submit(t.Context(), tt.service, tt.fields)
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if id != genID {
				t.Errorf("Submit = %q, want %q", id, genID)
			}
			if want := "POST /v2beta/stable-image/" + tt.service; gotReq != want {
				t.Errorf("request = %q, want %q", gotReq, want)
			}
			if gotAccept != "image/*" {
				t.Errorf("Accept = %q, want image/* as the API's examples send it", gotAccept)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("server got parts\n%s\nwant\n%s", summarize(got), summarize(tt.want))
			}
		})
	}
}

func TestSubmitMalformed(t *testing.T) {
	tests := []struct {
		name string
		ct   string
		body string
		want string
	}{
		{"path traversal id", "application/json", `{"id":"../../v1/user/balance"}`, `generation id "../../v1/user/balance" is not 1–128 characters`},
		{"empty id", "application/json", `{"id":""}`, `generation id "" is not`},
		{"id too long", "application/json", `{"id":"` + strings.Repeat("a", 129) + `"}`, "is not 1–128 characters"},
		{"id with a space", "application/json", `{"id":"ab cd"}`, `generation id "ab cd"`},
		{"id with an escape", "application/json", `{"id":"ab%2F"}`, `generation id "ab%2F"`},
		{"id a number", "application/json", `{"id":5}`, "cannot unmarshal number"},
		{"no id", "application/json", `{"status":"in-progress"}`, "no generation id in the response"},
		{"not json", "application/json", `<html>`, "invalid character"},
		{"an image", "image/png", "\x89PNG\r\n\x1a\n", `Content-Type "image/png", want application/json`},
	}
	input := writeFile(t, "in.png", fakeImage("png", 1, 500))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", tt.ct)
				io.WriteString(w, tt.body)
			})
			service, fields := stableRequest("upscale/creative", "", input)
			id, err := c.Submit(t.Context(), service, fields)
			if !errors.Is(err, ErrMalformedResponse) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Submit = %q, %v, want ErrMalformedResponse containing %q", id, err, tt.want)
			}
			if id != "" {
				t.Errorf("Submit = %q with an error, want no id", id)
			}
			if got := Classify(err); got != ClassOther {
				t.Errorf("Classify = %v, want %v: the work may have started", got, ClassOther)
			}
			checkNoSecret(t, err)
		})
	}
}

func TestSubmitRefusedBeforeSending(t *testing.T) {
	for _, tt := range []struct {
		service string
		fields  []Field
		want    string
	}{
		{"generate/core", []Field{{Name: "prompt", Value: "x"}}, "generate/core answers synchronously: send it with StableImage"},
		{"upscale/slow", nil, `unknown service "upscale/slow"`},
		{"upscale/creative", []Field{{Name: "prompt", Value: "x"}}, "field image is required"},
	} {
		t.Run(tt.service, func(t *testing.T) {
			var hits atomic.Int32
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
			_, err := c.Submit(t.Context(), tt.service, tt.fields)
			if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Submit error = %v, want ErrInvalidRequest containing %q", err, tt.want)
			}
			if hits.Load() != 0 {
				t.Error("the server saw a request")
			}
		})
	}
}

func TestResult(t *testing.T) {
	img := map[string][]byte{"png": fakeImage("png", 1, 20_000), "jpeg": fakeImage("jpeg", 2, 20_001), "webp": fakeImage("webp", 3, 20_002)}
	tests := []struct {
		name     string
		answer   func(w http.ResponseWriter)
		wantDone bool
		want     Artifact
		image    []byte
	}{
		{
			name: "in progress",
			answer: func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusAccepted)
				io.WriteString(w, `{"id":"`+genID+`","status":"in-progress"}`)
			},
		},
		{
			name: "in progress with a status the spec does not list yet",
			answer: func(w http.ResponseWriter) {
				w.WriteHeader(http.StatusAccepted)
				io.WriteString(w, `{"id":"`+genID+`","status":"queued","progress":0.4}`)
			},
		},
		{
			name:     "png",
			answer:   func(w http.ResponseWriter) { answerImage(w, "png", img["png"], "343940597", "SUCCESS", "req-1") },
			wantDone: true,
			want:     Artifact{Seed: 343940597, FinishReason: FinishSuccess, RequestID: "req-1", Format: "png"},
			image:    img["png"],
		},
		{
			name:     "jpeg",
			answer:   func(w http.ResponseWriter) { answerImage(w, "jpeg", img["jpeg"], "1", "CONTENT_FILTERED", "") },
			wantDone: true,
			want:     Artifact{Seed: 1, FinishReason: FinishContentFiltered, Format: "jpeg"},
			image:    img["jpeg"],
		},
		{
			name:     "webp",
			answer:   func(w http.ResponseWriter) { answerImage(w, "webp", img["webp"], "2", "SUCCESS", "") },
			wantDone: true,
			want:     Artifact{Seed: 2, FinishReason: FinishSuccess, Format: "webp"},
			image:    img["webp"],
		},
		{
			name: "json webp",
			answer: func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json; type=image/webp")
				io.WriteString(w, imageJSON(img["webp"], "3", "SUCCESS"))
			},
			wantDone: true,
			want:     Artifact{Seed: 3, FinishReason: FinishSuccess, Format: "webp"},
			image:    img["webp"],
		},
		{
			name: "json without a type",
			answer: func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, imageJSON(img["jpeg"], "4", "SUCCESS"))
			},
			wantDone: true,
			want:     Artifact{Seed: 4, FinishReason: FinishSuccess, Format: "jpeg"},
			image:    img["jpeg"],
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotReq, gotAccept string
			var gotLen int64
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				gotReq, gotAccept, gotLen = r.Method+" "+r.URL.EscapedPath(), r.Header.Get("Accept"), r.ContentLength
				tt.answer(w)
			})
			sink := newMemSink()
			arts, done, err := c.Result(t.Context(), genID, sink)
			if err != nil {
				t.Fatalf("Result: %v", err)
			}
			if want := "GET /v2beta/results/" + genID; gotReq != want || gotAccept != "*/*" || gotLen != 0 {
				t.Errorf("request = %q, Accept %q, %d-byte body; want %q, */*, none", gotReq, gotAccept, gotLen, want)
			}
			if done != tt.wantDone {
				t.Fatalf("Result done = %v, want %v", done, tt.wantDone)
			}
			if sink.err != nil {
				t.Fatalf("sink contract: %v", sink.err)
			}
			if !done {
				if arts != nil || len(sink.calls) != 0 {
					t.Errorf("in progress: artifacts %+v, sink calls %v; want none", arts, sink.calls)
				}
				return
			}
			if want := []Artifact{tt.want}; !reflect.DeepEqual(arts, want) || !reflect.DeepEqual(sink.arts, want) {
				t.Errorf("artifacts = %+v (sink %+v), want %+v", arts, sink.arts, want)
			}
			if len(sink.images) != 1 || !bytes.Equal(sink.images[0], tt.image) {
				t.Errorf("sink got %d images, want the %d-byte image", len(sink.images), len(tt.image))
			}
		})
	}
}

func TestResultErrors(t *testing.T) {
	png := fakeImage("png", 1, 1000)
	t.Run("generation not found", func(t *testing.T) {
		c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"id":"2bca35116bc5431d6dc4b4ea2ef3da2f","name":"generation_not_found","errors":["id: the generation either does not exist or has expired."]}`)
		})
		_, done, err := c.Result(t.Context(), genID, newMemSink())
		apiErr, ok := errors.AsType[*APIError](err)
		if !ok || apiErr.Status != http.StatusNotFound || apiErr.Name != "generation_not_found" || done {
			t.Fatalf("Result = done %v, %v; want *APIError 404 generation_not_found", done, err)
		}
		if got := Classify(err); got != ClassInvalid {
			t.Errorf("Classify = %v, want %v", got, ClassInvalid)
		}
	})
	for _, tt := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   string
	}{
		{"no seed", func(w http.ResponseWriter) { answerImage(w, "png", png, "", "SUCCESS", "") }, "no Seed header"},
		{"json no seed", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, imageJSON(png, "", "SUCCESS"))
		}, "no seed in the response"},
		{"status 204", func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }, "status 204, want 200 or 202"},
		{"gif", func(w http.ResponseWriter) { answerImage(w, "gif", []byte("GIF89a-----------"), "1", "SUCCESS", "") }, `Content-Type "image/gif"`},
		{"bytes unlike the type", func(w http.ResponseWriter) { answerImage(w, "webp", png, "1", "SUCCESS", "") }, "the image is png by its first bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) { tt.answer(w) })
			_, done, err := c.Result(t.Context(), genID, newMemSink())
			if !errors.Is(err, ErrMalformedResponse) || !strings.Contains(err.Error(), tt.want) || done {
				t.Fatalf("Result = done %v, %v; want ErrMalformedResponse containing %q", done, err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "result "+genID+": ") {
				t.Errorf("error = %q, want it to name the generation", err)
			}
		})
	}
}

func TestResultRefusesBadIDs(t *testing.T) {
	for _, id := range []string{
		"", "../../v1/user/balance", "a/b", "a%2Fb", "a.b", "a b", "a?b=1", "a#b", "é", strings.Repeat("a", 129),
	} {
		var hits atomic.Int32
		c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
		_, done, err := c.Result(t.Context(), id, newMemSink())
		if !errors.Is(err, ErrInvalidRequest) || done {
			t.Errorf("Result(%q) = done %v, %v; want ErrInvalidRequest", id, done, err)
		}
		if hits.Load() != 0 {
			t.Errorf("Result(%q) sent a request", id)
		}
	}
	for _, id := range []string{"a", "A-z_09", strings.Repeat("f", 128), genID} {
		if !ValidGenerationID(id) {
			t.Errorf("ValidGenerationID(%q) = false, want true", id)
		}
	}
}

// TestAcceptJSON checks that a client made with AcceptJSON asks for JSON
// answers on a Stable Image request and on a result poll, and decodes them.
func TestAcceptJSON(t *testing.T) {
	img := []byte("\x89PNG\r\n\x1a\nnot really a png but sniffed as one")
	body := `{"image":"` + base64.StdEncoding.EncodeToString(img) + `","finish_reason":"SUCCESS","seed":42}`
	var accepts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accepts = append(accepts, r.Header.Get("Accept"))
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json; type=image/png")
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	c, err := NewClient(Options{BaseURL: srv.URL, APIKey: "k", AcceptJSON: true})
	if err != nil {
		t.Fatal(err)
	}
	sink := newMemSink()
	arts, err := c.StableImage(t.Context(), "generate/core", []Field{{Name: "prompt", Value: "a fox"}}, sink)
	if err != nil || len(arts) != 1 || arts[0].Seed != 42 || !bytes.Equal(sink.images[0], img) {
		t.Fatalf("StableImage = %+v, %v; image %q", arts, err, sink.images)
	}
	sink = newMemSink()
	arts, done, err := c.Result(t.Context(), "abc123", sink)
	if err != nil || !done || len(arts) != 1 || !bytes.Equal(sink.images[0], img) {
		t.Fatalf("Result = %+v, %v, %v", arts, done, err)
	}
	if want := []string{"application/json", "application/json"}; !slices.Equal(accepts, want) {
		t.Errorf("Accept headers %q, want %q", accepts, want)
	}
}
