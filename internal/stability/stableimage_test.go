package stability

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/batch-tool/batch/internal/catalog"
)

func TestStableImageRequest(t *testing.T) {
	png := fakeImage("png", 1, 100_000)
	jpeg := fakeImage("jpeg", 2, 70_001)
	webp := fakeImage("webp", 3, 50_002)
	mask := fakeImage("png", 4, 3_000)
	pngPath := writeFile(t, "in.png", png)
	jpegPath := writeFile(t, "photo.jpg", jpeg)
	webpPath := writeFile(t, "product", webp) // no extension: the content decides
	maskPath := writeFile(t, "mask.png", mask)
	big := fakeImage("png", 5, smallForm+1)
	bigPath := writeFile(t, "big.png", big)

	tests := []struct {
		name    string
		service string
		fields  []Field
		want    []sentPart // in the order sent
		format  string     // the answer's format
	}{
		{
			name:    "core text to image",
			service: "generate/core",
			fields: []Field{
				{Name: "prompt", Value: "a lighthouse at dusk, \"quoted\"\nand two lines"}, {Name: "aspect_ratio", Value: "16:9"},
				{Name: "negative_prompt", Value: "fog"}, {Name: "seed", Value: "42"}, {Name: "style_preset", Value: "photographic"}, {Name: "output_format", Value: "jpeg"},
			},
			want: []sentPart{
				{Name: "prompt", Data: "a lighthouse at dusk, \"quoted\"\nand two lines"}, {Name: "aspect_ratio", Data: "16:9"},
				{Name: "negative_prompt", Data: "fog"}, {Name: "seed", Data: "42"}, {Name: "style_preset", Data: "photographic"},
				{Name: "output_format", Data: "jpeg"},
			},
			format: "jpeg",
		},
		{
			name:    "sd3 text to image sends no mode",
			service: "generate/sd3",
			fields:  []Field{{Name: "prompt", Value: "a fox"}, {Name: "model", Value: "sd3.5-flash"}, {Name: "cfg_scale", Value: "4.5"}},
			want:    []sentPart{{Name: "prompt", Data: "a fox"}, {Name: "model", Data: "sd3.5-flash"}, {Name: "cfg_scale", Data: "4.5"}},
			format:  "png",
		},
		{
			name:    "sd3 image to image derives mode",
			service: "generate/sd3",
			fields:  []Field{{Name: "prompt", Value: "in snow"}, {Name: "image", Value: pngPath}, {Name: "strength", Value: "0.6"}, {Name: "output_format", Value: "webp"}},
			want: []sentPart{
				{Name: "prompt", Data: "in snow"},
				{Name: "image", FileName: "image.png", ContentType: "image/png", Data: string(png)},
				{Name: "strength", Data: "0.6"}, {Name: "output_format", Data: "webp"},
				{Name: "mode", Data: "image-to-image"},
			},
			format: "webp",
		},
		{
			name:    "ultra image to image has no mode",
			service: "generate/ultra",
			fields:  []Field{{Name: "prompt", Value: "oil painting"}, {Name: "image", Value: jpegPath}, {Name: "strength", Value: "0.3"}},
			want: []sentPart{
				{Name: "prompt", Data: "oil painting"},
				{Name: "image", FileName: "image.jpeg", ContentType: "image/jpeg", Data: string(jpeg)},
				{Name: "strength", Data: "0.3"},
			},
			format: "png",
		},
		{
			name:    "inpaint with two file parts",
			service: "edit/inpaint",
			fields:  []Field{{Name: "image", Value: webpPath}, {Name: "mask", Value: maskPath}, {Name: "prompt", Value: "a fern"}, {Name: "grow_mask", Value: "10"}},
			want: []sentPart{
				{Name: "image", FileName: "image.webp", ContentType: "image/webp", Data: string(webp)},
				{Name: "mask", FileName: "mask.png", ContentType: "image/png", Data: string(mask)},
				{Name: "prompt", Data: "a fern"}, {Name: "grow_mask", Data: "10"},
			},
			format: "png",
		},
		{
			name:    "upscale fast takes no seed",
			service: "upscale/fast",
			fields:  []Field{{Name: "image", Value: pngPath}},
			want:    []sentPart{{Name: "image", FileName: "image.png", ContentType: "image/png", Data: string(png)}},
			format:  "png",
		},
		{
			name:    "an input held in memory is not read again",
			service: "edit/inpaint",
			fields: []Field{{Name: "image", Value: filepath.Join(t.TempDir(), "gone.webp"), Data: webp},
				{Name: "mask", Value: maskPath}, {Name: "prompt", Value: "a fern"}},
			want: []sentPart{
				{Name: "image", FileName: "image.webp", ContentType: "image/webp", Data: string(webp)},
				{Name: "mask", FileName: "mask.png", ContentType: "image/png", Data: string(mask)},
				{Name: "prompt", Data: "a fern"},
			},
			format: "png",
		},
		{
			name:    "an input over the in-memory size is streamed",
			service: "upscale/fast",
			fields:  []Field{{Name: "image", Value: bigPath}},
			want:    []sentPart{{Name: "image", FileName: "image.png", ContentType: "image/png", Data: string(big)}},
			format:  "png",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := fakeImage(tt.format, 9, 5000)
			var got []sentPart
			var gotReq string
			var gotHeader http.Header
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				gotReq, gotHeader = r.Method+" "+r.URL.Path, r.Header.Clone()
				var err error
				if got, err = readForm(r); err != nil {
					t.Errorf("server: %v", err)
				}
				seed := "7"
				if tt.service == "upscale/fast" {
					seed = "" // the service takes no seed, so none is needed back
				}
				answerImage(w, tt.format, out, seed, "SUCCESS", "req-42")
			})
			trackFiles(t, c)
			sink := newMemSink()
			arts, err := c.StableImage(t.Context(), tt.service, tt.fields, sink)
			if err != nil {
				t.Fatalf("StableImage: %v", err)
			}
			if sink.err != nil {
				t.Fatalf("sink contract: %v", sink.err)
			}
			if want := "POST /v2beta/stable-image/" + tt.service; gotReq != want {
				t.Errorf("request = %q, want %q", gotReq, want)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("server got parts\n%s\nwant\n%s", summarize(got), summarize(tt.want))
			}
			for k, want := range map[string]string{
				"Authorization":            "Bearer " + testKey,
				"Accept":                   "image/*",
				"Stability-Client-Id":      "batch",
				"Stability-Client-Version": "1.2.3",
				"User-Agent":               "batch/1.2.3",
			} {
				if v := gotHeader.Get(k); v != want {
					t.Errorf("header %s = %q, want %q", k, v, want)
				}
			}
			if ct := gotHeader.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/form-data; boundary=") {
				t.Errorf("Content-Type = %q, want multipart/form-data with a boundary", ct)
			}
			if te := gotHeader.Get("Transfer-Encoding"); te != "" {
				t.Errorf("Transfer-Encoding = %q, want a Content-Length", te)
			}
			seed := uint32(7)
			if tt.service == "upscale/fast" {
				seed = 0
			}
			want := []Artifact{{Seed: seed, FinishReason: FinishSuccess, RequestID: "req-42", Format: tt.format}}
			if !reflect.DeepEqual(arts, want) || !reflect.DeepEqual(sink.arts, want) {
				t.Errorf("artifacts = %+v (sink %+v), want %+v", arts, sink.arts, want)
			}
			if len(sink.images) != 1 || !bytes.Equal(sink.images[0], out) {
				t.Errorf("sink got %d images, want the %d-byte answer", len(sink.images), len(out))
			}
		})
	}
}

// summarize prints parts without the files' bytes.
func summarize(parts []sentPart) string {
	var b strings.Builder
	for _, p := range parts {
		data := p.Data
		if p.FileName != "" {
			data = strings.Repeat("#", min(len(data), 8)) + "…"
		}
		b.WriteString("  " + p.Name + " " + p.FileName + " " + p.ContentType + " " + strconv.Quote(data) + "\n")
	}
	return b.String()
}

func TestStableImageAnswers(t *testing.T) {
	img := map[string][]byte{"png": fakeImage("png", 1, 40_000), "jpeg": fakeImage("jpeg", 2, 40_001), "webp": fakeImage("webp", 3, 40_002)}
	long := strings.Repeat("a", 129)
	tests := []struct {
		name    string
		service string // default generate/core
		format  string // output_format asked; "" = none (png)
		answer  func(w http.ResponseWriter)
		want    Artifact
		image   []byte
	}{
		{
			name:   "raw png by default",
			answer: func(w http.ResponseWriter) { answerImage(w, "png", img["png"], "4294967295", "SUCCESS", "0123abcd") },
			want:   Artifact{Seed: 4294967295, FinishReason: FinishSuccess, RequestID: "0123abcd", Format: "png"},
			image:  img["png"],
		},
		{
			name:   "raw jpeg",
			format: "jpeg",
			answer: func(w http.ResponseWriter) { answerImage(w, "jpeg", img["jpeg"], "0", "CONTENT_FILTERED", "") },
			want:   Artifact{Seed: 0, FinishReason: FinishContentFiltered, Format: "jpeg"},
			image:  img["jpeg"],
		},
		{
			name:   "raw webp",
			format: "webp",
			answer: func(w http.ResponseWriter) { answerImage(w, "webp", img["webp"], "12", "SUCCESS", "a.b_c:d-e") },
			want:   Artifact{Seed: 12, FinishReason: FinishSuccess, RequestID: "a.b_c:d-e", Format: "webp"},
			image:  img["webp"],
		},
		{
			name:   "request id too long is dropped",
			answer: func(w http.ResponseWriter) { answerImage(w, "png", img["png"], "1", "SUCCESS", long) },
			want:   Artifact{Seed: 1, FinishReason: FinishSuccess, Format: "png"},
			image:  img["png"],
		},
		{
			name:   "request id with unsafe characters is dropped",
			answer: func(w http.ResponseWriter) { answerImage(w, "png", img["png"], "1", "SUCCESS", "id/../x y") },
			want:   Artifact{Seed: 1, FinishReason: FinishSuccess, Format: "png"},
			image:  img["png"],
		},
		{
			name:   "json with a type parameter",
			format: "webp",
			answer: func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json; type=image/webp")
				w.Header().Set("X-Request-Id", "r-1")
				io.WriteString(w, imageJSON(img["webp"], "99", "SUCCESS"))
			},
			want:  Artifact{Seed: 99, FinishReason: FinishSuccess, RequestID: "r-1", Format: "webp"},
			image: img["webp"],
		},
		{
			name:   "json without a type, metadata first, unknown keys",
			format: "jpeg",
			answer: func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, ` { "finish_reason" : "CONTENT_FILTERED", "seed": 5, "extra": {"a":[1,null]},
					"image": "`+base64.StdEncoding.EncodeToString(img["jpeg"])+`" } `)
			},
			want:  Artifact{Seed: 5, FinishReason: FinishContentFiltered, Format: "jpeg"},
			image: img["jpeg"],
		},
		{
			name:    "no seed from a service that takes none",
			service: "upscale/fast",
			answer:  func(w http.ResponseWriter) { answerImage(w, "png", img["png"], "", "SUCCESS", "") },
			want:    Artifact{FinishReason: FinishSuccess, Format: "png"},
			image:   img["png"],
		},
		{
			name:    "json without seed from a service that takes none",
			service: "upscale/fast",
			answer: func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, imageJSON(img["png"], "", "SUCCESS"))
			},
			want:  Artifact{FinishReason: FinishSuccess, Format: "png"},
			image: img["png"],
		},
	}
	input := writeFile(t, "in.png", fakeImage("png", 5, 1000))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				tt.answer(w)
			})
			service, fields := stableRequest(tt.service, tt.format, input)
			sink := newMemSink()
			arts, err := c.StableImage(t.Context(), service, fields, sink)
			if err != nil {
				t.Fatalf("StableImage: %v", err)
			}
			if sink.err != nil {
				t.Fatalf("sink contract: %v", sink.err)
			}
			if len(arts) != 1 || arts[0] != tt.want || len(sink.arts) != 1 || sink.arts[0] != tt.want {
				t.Errorf("artifacts = %+v (sink %+v), want [%+v]", arts, sink.arts, tt.want)
			}
			if len(sink.images) != 1 || !bytes.Equal(sink.images[0], tt.image) {
				t.Errorf("sink got %d images, want the %d-byte image", len(sink.images), len(tt.image))
			}
			if got := strings.Join(sink.calls, ","); got != "begin 0,end 0" {
				t.Errorf("sink calls = %s, want begin 0,end 0", got)
			}
		})
	}
}

// stableRequest returns a valid request for service ("" = generate/core)
// asking for format ("" = the default); input is an image for services
// that need one.
func stableRequest(service, format, input string) (string, []Field) {
	var fields []Field
	switch service {
	case "", "generate/core":
		service = "generate/core"
		fields = []Field{{Name: "prompt", Value: "a cat"}}
	case "upscale/fast":
		fields = []Field{{Name: "image", Value: input}}
	case "upscale/creative":
		fields = []Field{{Name: "image", Value: input}, {Name: "prompt", Value: "sharper"}}
	default:
		panic("stableRequest: " + service)
	}
	if format != "" {
		fields = append(fields, Field{Name: "output_format", Value: format})
	}
	return service, fields
}

func TestStableImageMalformed(t *testing.T) {
	png := fakeImage("png", 1, 2000)
	jpeg := fakeImage("jpeg", 2, 2000)
	raw := func(ct, seed, reason string, body []byte) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header()["Content-Type"] = nil // no sniffing by the test server
			if ct != "" {
				w.Header().Set("Content-Type", ct)
			}
			if seed != "" {
				w.Header().Set("Seed", seed)
			}
			if reason != "" {
				w.Header().Set("Finish-Reason", reason)
			}
			w.Write(body)
		}
	}
	json := func(ct, body string) func(http.ResponseWriter) { return raw(ct, "", "", []byte(body)) }
	tests := []struct {
		name   string
		format string // output_format asked
		answer func(http.ResponseWriter)
		want   string
	}{
		{"jpeg when png was asked", "", raw("image/jpeg", "1", "SUCCESS", jpeg), `Content-Type "image/jpeg", but output_format png was asked`},
		{"png when webp was asked", "webp", raw("image/png", "1", "SUCCESS", png), `Content-Type "image/png", but output_format webp was asked`},
		{"jpeg bytes labelled png", "", raw("image/png", "1", "SUCCESS", jpeg), `the image is jpeg by its first bytes, but Content-Type "image/png"`},
		{"text labelled png", "", raw("image/png", "1", "SUCCESS", []byte("not an image at all")), "the image is text/plain by its first bytes"},
		{"empty body", "", raw("image/png", "1", "SUCCESS", nil), "the image is text/plain by its first bytes"},
		{"gif", "", raw("image/gif", "1", "SUCCESS", []byte("GIF89a")), `Content-Type "image/gif", want image/png`},
		{"html", "", raw("text/html", "1", "SUCCESS", []byte("<html>")), `Content-Type "text/html", want image/png`},
		{"no content type", "", raw("", "1", "SUCCESS", png), `Content-Type "" is not a media type`},
		{"no seed", "", raw("image/png", "", "SUCCESS", png), "no Seed header"},
		{"negative seed", "", raw("image/png", "-1", "SUCCESS", png), `Seed header "-1" is not a 32-bit unsigned integer`},
		{"seed too big", "", raw("image/png", "4294967296", "SUCCESS", png), `Seed header "4294967296"`},
		{"seed with a sign", "", raw("image/png", "+5", "SUCCESS", png), `Seed header "+5"`},
		{"seed not decimal", "", raw("image/png", "0x10", "SUCCESS", png), `Seed header "0x10"`},
		{"no finish reason", "", raw("image/png", "1", "", png), `Finish-Reason header ""`},
		{"unknown finish reason", "", raw("image/png", "1", "FILTERED", png), `Finish-Reason header "FILTERED"`},
		{"json type gif", "", json("application/json; type=image/gif", imageJSON(png, "1", "SUCCESS")), "type is not image/png"},
		{"json type jpeg when png was asked", "", json("application/json; type=image/jpeg", imageJSON(jpeg, "1", "SUCCESS")), `but output_format png was asked`},
		{"json jpeg bytes when png was asked", "", json("application/json", imageJSON(jpeg, "1", "SUCCESS")), "the image is jpeg by its first bytes, but output_format png was asked"},
		{"json no image", "", json("application/json", `{"finish_reason":"SUCCESS","seed":1}`), "no image in the response"},
		{"json no finish reason", "", json("application/json", `{"image":"","seed":1}`), "no finish_reason"},
		{"json no seed", "", json("application/json", imageJSON(png, "", "SUCCESS")), "no seed in the response"},
		{"json unknown finish reason", "", json("application/json", imageJSON(png, "1", "DONE")), `unknown finish_reason "DONE"`},
		{"json seed float", "", json("application/json", imageJSON(png, "1.5", "SUCCESS")), `seed "1.5" is not a 32-bit`},
		{"json seed string", "", json("application/json", imageJSON(png, `"1"`, "SUCCESS")), `unexpected '"' where a value belongs`},
		{"json image not a string", "", json("application/json", `{"image":7,"finish_reason":"SUCCESS","seed":1}`), "image is not a string"},
		{"json duplicate image", "", json("application/json", `{"image":"","image":"","finish_reason":"SUCCESS","seed":1}`), `duplicate key "image"`},
		{"json bad base64", "", json("application/json", `{"image":"a$b=","finish_reason":"SUCCESS","seed":1}`), "image: base64: illegal base64 data"},
		{"json base64 cut mid-quantum", "", json("application/json", `{"image":"iVBORw0KGgo","finish_reason":"SUCCESS","seed":1}`), "image: base64: length % 4 is not 0"},
		{"json trailing data", "", json("application/json", imageJSON(png, "1", "SUCCESS")+"{}"), "after the response object"},
		{"json truncated", "", json("application/json", imageJSON(png, "1", "SUCCESS")[:100]), "body ends in the middle"},
		{"json array", "", json("application/json", `[]`), `unexpected '['`},
		{"status 201", "", func(w http.ResponseWriter) { w.WriteHeader(201) }, "status 201, want 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				tt.answer(w)
			})
			service, fields := stableRequest("", tt.format, "")
			sink := newMemSink()
			_, err := c.StableImage(t.Context(), service, fields, sink)
			if !errors.Is(err, ErrMalformedResponse) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("StableImage error = %v, want ErrMalformedResponse containing %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "stable-image generate/core: ") {
				t.Errorf("error = %q, want it to name the service", err)
			}
			if got := Classify(err); got != ClassOther {
				t.Errorf("Classify = %v, want %v: the server answered 2xx", got, ClassOther)
			}
			if sink.err != nil {
				t.Errorf("sink contract: %v", sink.err)
			}
			checkNoSecret(t, err)
		})
	}
}

func TestStableImageRefusedBeforeSending(t *testing.T) {
	dir := t.TempDir()
	png := writeFile(t, "in.png", fakeImage("png", 1, 1000))
	text := writeFile(t, "notes.png", []byte("just some text, not an image"))
	empty := writeFile(t, "empty.png", nil)
	huge := filepath.Join(dir, "huge.png") // sparse: 10 MiB of zeros after a PNG signature
	if err := os.WriteFile(huge, fakeImage("png", 2, 64), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, maxRequestBody); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		service string
		fields  []Field
		sink    Sink
		want    []string
	}{
		{"unknown service", "generate/sdxl", []Field{{Name: "prompt", Value: "x"}}, newMemSink(), []string{`unknown service "generate/sdxl"`, "generate/core, generate/sd3"}},
		{"async service", "upscale/creative", []Field{{Name: "image", Value: png}, {Name: "prompt", Value: "x"}}, newMemSink(), []string{"upscale/creative is asynchronous: send it with Submit"}},
		{"nil sink", "generate/core", []Field{{Name: "prompt", Value: "x"}}, nil, []string{"sink is nil"}},
		{"v1 field", "generate/core", []Field{{Name: "prompt", Value: "x"}, {Name: "steps", Value: "30"}}, newMemSink(), []string{`generate/core takes no field "steps"`}},
		{"field of another service", "generate/core", []Field{{Name: "prompt", Value: "x"}, {Name: "cfg_scale", Value: "5"}}, newMemSink(), []string{`takes no field "cfg_scale"`}},
		{"derived field", "generate/sd3", []Field{{Name: "prompt", Value: "x"}, {Name: "mode", Value: "image-to-image"}}, newMemSink(), []string{"field mode is set by the client"}},
		{"repeated field", "generate/core", []Field{{Name: "prompt", Value: "x"}, {Name: "prompt", Value: "y"}}, newMemSink(), []string{"field prompt is given twice"}},
		{"missing required field", "generate/core", []Field{{Name: "seed", Value: "1"}}, newMemSink(), []string{"field prompt is required"}},
		{"value outside the enum", "generate/core", []Field{{Name: "prompt", Value: "x"}, {Name: "aspect_ratio", Value: "4:3"}}, newMemSink(), []string{`field aspect_ratio: "4:3" is not one of 21:9, 16:9`}},
		{"output format of another service", "edit/remove-background", []Field{{Name: "image", Value: png}, {Name: "output_format", Value: "jpeg"}}, newMemSink(), []string{`field output_format: "jpeg" is not one of png, webp`}},
		{"every problem at once", "generate/core", []Field{{Name: "steps", Value: "30"}, {Name: "aspect_ratio", Value: "wide"}}, newMemSink(), []string{`takes no field "steps"`, `"wide" is not one of`, "field prompt is required"}},
		{"no path", "upscale/fast", []Field{{Name: "image", Value: ""}}, newMemSink(), []string{"field image: no file path"}},
		{"missing file", "upscale/fast", []Field{{Name: "image", Value: filepath.Join(dir, "nope.png")}}, newMemSink(), []string{"field image: open", "no such file"}},
		{"directory", "upscale/fast", []Field{{Name: "image", Value: dir}}, newMemSink(), []string{"is not a regular file"}},
		{"empty file", "upscale/fast", []Field{{Name: "image", Value: empty}}, newMemSink(), []string{"empty.png is empty"}},
		{"not an image", "upscale/fast", []Field{{Name: "image", Value: text}}, newMemSink(), []string{"notes.png is text/plain by its content, not PNG, JPEG or WebP"}},
		{"second input broken", "edit/erase", []Field{{Name: "image", Value: png}, {Name: "mask", Value: text}}, newMemSink(), []string{"field mask:"}},
		{"body over 10 MiB", "upscale/fast", []Field{{Name: "image", Value: huge}}, newMemSink(), []string{"over the API's limit of 10 MiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
			trackFiles(t, c)
			_, err := c.StableImage(t.Context(), tt.service, tt.fields, tt.sink)
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("StableImage error = %v, want ErrInvalidRequest", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error = %q, want it to contain %q", err, want)
				}
			}
			if got := Classify(err); got != ClassInvalid {
				t.Errorf("Classify = %v, want %v", got, ClassInvalid)
			}
			if n := hits.Load(); n != 0 {
				t.Errorf("server saw %d requests, want none", n)
			}
			checkNoSecret(t, err)
		})
	}
}

// TestStableImageInputBreaksWhileSent breaks an input while its request
// is made: a body small enough to be made in memory first (smallForm) and
// one streamed.
func TestStableImageInputBreaksWhileSent(t *testing.T) {
	head := fakeImage("png", 1, 4096)
	errDisk := errors.New("input/output error")
	type test struct {
		name string
		file func() *fakeFile
		want string
	}
	var tests []test
	for _, size := range []int64{smallForm / 2, 1 << 20} {
		tests = append(tests, test{
			name: fmt.Sprintf("read error, %d bytes", size),
			file: func() *fakeFile {
				return &fakeFile{r: io.MultiReader(bytes.NewReader(head), iotest.ErrReader(errDisk)), size: size}
			},
			want: "field image: input/output error",
		}, test{
			name: fmt.Sprintf("file shrank, %d bytes", size),
			file: func() *fakeFile { return &fakeFile{r: bytes.NewReader(head), size: size} },
			want: fmt.Sprintf("field image: the file shrank from %d bytes", size),
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var complete atomic.Bool
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				if _, err := readForm(r); err == nil {
					complete.Store(true) // the API would have done the work
				}
			})
			f := tt.file()
			openFake(c, f)
			_, err := c.StableImage(t.Context(), "upscale/fast", []Field{{Name: "image", Value: "any.png"}}, newMemSink())
			if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("StableImage error = %v, want ErrInvalidRequest containing %q", err, tt.want)
			}
			if got := Classify(err); got != ClassInvalid {
				t.Errorf("Classify = %v, want %v: the body never completed, nothing was charged", got, ClassInvalid)
			}
			if complete.Load() {
				t.Error("the server read a complete request")
			}
			if !f.closed.Load() {
				t.Error("the input was not closed")
			}
			checkNoSecret(t, err)
		})
	}
}

func TestStableImageCancelWhileUploading(t *testing.T) {
	// 9 MiB of input, more than loopback socket buffers hold while the
	// server reads none of it past the first 64 KiB: the request cannot be
	// complete when the context is cancelled.
	const size = 9 << 20
	head := fakeImage("png", 1, 512)
	f := &fakeFile{r: io.MultiReader(bytes.NewReader(head), io.LimitReader(zeros{}, size-512)), size: size}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		io.CopyN(io.Discard, r.Body, 64<<10)
		cancel()
		io.Copy(io.Discard, r.Body) // ends when the client gives up the connection
	})
	openFake(c, f)
	_, err := c.StableImage(ctx, "upscale/fast", []Field{{Name: "image", Value: "big.png"}}, newMemSink())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("StableImage error = %v, want context.Canceled", err)
	}
	te, ok := errors.AsType[*TransportError](err)
	if !ok || te.Sent {
		t.Errorf("error = %#v, want *TransportError not sent", err)
	}
	if got := Classify(err); got != ClassNotSent {
		t.Errorf("Classify = %v, want %v", got, ClassNotSent)
	}
	if !f.closed.Load() {
		t.Error("the input was not closed")
	}
	checkNoSecret(t, err)
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestStableImageAnswerBreaksOff(t *testing.T) {
	for _, tt := range []struct {
		name    string
		respond string // written before the connection is closed
	}{
		{"closed before any answer", ""},
		{"closed mid image", "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nSeed: 1\r\nFinish-Reason: SUCCESS\r\nContent-Length: 1000\r\n\r\n\x89PNG\r\n\x1a\n"},
		{"closed mid json", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"image\":\"iVBORw0KGgo"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				if _, err := readForm(r); err != nil { // the whole request arrived
					t.Errorf("server: %v", err)
				}
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				buf.WriteString(tt.respond)
				buf.Flush()
				conn.Close()
			})
			_, err := c.StableImage(t.Context(), "generate/core", []Field{{Name: "prompt", Value: "x"}}, newMemSink())
			te, ok := errors.AsType[*TransportError](err)
			if !ok || !te.Sent {
				t.Fatalf("StableImage error = %v, want *TransportError with Sent", err)
			}
			if got := Classify(err); got != ClassUnknown {
				t.Errorf("Classify = %v, want %v", got, ClassUnknown)
			}
			checkNoSecret(t, err)
		})
	}
}

func TestStableImageCancelMidAnswer(t *testing.T) {
	for _, ct := range []string{"image/png", "application/json"} {
		t.Run(ct, func(t *testing.T) {
			first := fakeImage("png", 0, 80_000)
			if ct == "application/json" {
				first = []byte(`{"image":"` + strings.Repeat("iVBORw0KGgoA", 20_000))
			}
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", ct)
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
			_, err := c.StableImage(ctx, "generate/core", []Field{{Name: "prompt", Value: "x"}}, sink)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("StableImage error = %v, want context.Canceled", err)
			}
			if te, ok := errors.AsType[*TransportError](err); !ok || !te.Sent {
				t.Errorf("error = %v, want *TransportError with Sent", err)
			}
			if len(sink.images) == 0 || len(sink.images[0]) == 0 {
				t.Error("the sink got no bytes before the cancel")
			}
		})
	}
}

func TestStableImageSinkErrors(t *testing.T) {
	errSink := errors.New("disk full")
	png := fakeImage("png", 1, 3000)
	for _, tt := range []struct {
		name  string
		json  bool
		setup func(*memSink)
	}{
		{"raw begin", false, func(s *memSink) { s.beginErr = errSink }},
		{"raw end", false, func(s *memSink) { s.endErr = errSink }},
		{"json begin", true, func(s *memSink) { s.beginErr = errSink }},
		{"json end", true, func(s *memSink) { s.endErr = errSink }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if tt.json {
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, imageJSON(png, "1", "SUCCESS"))
					return
				}
				answerImage(w, "png", png, "1", "SUCCESS", "")
			})
			sink := newMemSink()
			tt.setup(sink)
			_, err := c.StableImage(t.Context(), "generate/core", []Field{{Name: "prompt", Value: "x"}}, sink)
			if !errors.Is(err, errSink) || errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("StableImage error = %v, want the sink's error alone", err)
			}
			if want := "stable-image generate/core: artifact 0: disk full"; err.Error() != want {
				t.Errorf("error = %q, want %q", err, want)
			}
		})
	}
}

func TestCatalogueIsEncodable(t *testing.T) {
	// Every derived field of the catalogue is one the client knows how to
	// set, and Result's rule (a seed is required) holds for every
	// asynchronous service.
	for _, o := range catalog.All() {
		for _, f := range o.Fields {
			if f.Derived {
				if _, _, err := derive(f.Name, func(string) bool { return false }); err != nil {
					t.Errorf("%s: %v", o.Service, err)
				}
			}
		}
		if _, ok := o.Field("seed"); o.Async && !ok {
			t.Errorf("%s is asynchronous and takes no seed, but Result requires one", o.Service)
		}
	}
}

func TestStableImageAnswerBeforeBodyRead(t *testing.T) {
	// A server may refuse a request before reading its body, as the API
	// does with 413: the answer is the error, and the writer of the body
	// ends though the transport stopped reading.
	path := writeFile(t, "big.png", fakeImage("png", 1, 8<<20))
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, `{"id":"4212a4b66fbe1cedca4bf2133d35dca5","name":"payload_too_large","errors":["body: payloads cannot be larger than 10MiB in size"]}`)
	})
	trackFiles(t, c)
	_, err := c.StableImage(t.Context(), "upscale/fast", []Field{{Name: "image", Value: path}}, newMemSink())
	apiErr, ok := errors.AsType[*APIError](err)
	if !ok || apiErr.Status != http.StatusRequestEntityTooLarge || apiErr.Name != "payload_too_large" {
		t.Fatalf("StableImage error = %v, want *APIError 413 payload_too_large", err)
	}
	if got := Classify(err); got != ClassInvalid {
		t.Errorf("Classify = %v, want %v", got, ClassInvalid)
	}
}
