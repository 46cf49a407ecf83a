package sandbox

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/imagefile"
)

// formField is one multipart part: a text value, or a file when file is
// non-nil.
type formField struct {
	name, value string
	file        []byte
}

func fv(name, value string) formField         { return formField{name: name, value: value} }
func file(name string, data []byte) formField { return formField{name: name, file: data} }

// multipartBody encodes fields as a multipart/form-data body and returns
// it with its Content-Type.
func multipartBody(t testing.TB, fields []formField) ([]byte, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range fields {
		var err error
		if f.file != nil {
			var w io.Writer
			if w, err = mw.CreateFormFile(f.name, f.name+".png"); err == nil {
				_, err = w.Write(f.file)
			}
		} else {
			err = mw.WriteField(f.name, f.value)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return body.Bytes(), mw.FormDataContentType()
}

// stablePost builds a Stable Image request the way a client sends one.
func stablePost(t testing.TB, service string, fields []formField, accept string) *http.Request {
	t.Helper()
	body, contentType := multipartBody(t, fields)
	req := httptest.NewRequest("POST", "/v2beta/stable-image/"+service, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk-test")
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Stability-Client-ID", "batch-test")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return req
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// stableErrorOf decodes a Stable Image error body, failing the test if it
// is not one.
func stableErrorOf(t *testing.T, rec *httptest.ResponseRecorder) stableErrorBody {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var e stableErrorBody
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("decode Stable Image error body %s: %v", rec.Body, err)
	}
	if !hexID.MatchString(e.ID) || e.Name == "" || len(e.Errors) == 0 {
		t.Errorf("error body %+v: want a 32-hex id, a name and at least one error", e)
	}
	if got := rec.Header().Get("X-Request-Id"); got != e.ID {
		t.Errorf("x-request-id = %q, want the error id %q", got, e.ID)
	}
	return e
}

// names reports whether one of the errors is about field.
func names(e stableErrorBody, field string) bool {
	return slices.ContainsFunc(e.Errors, func(m string) bool { return strings.HasPrefix(m, field+": ") })
}

// inputPNG, inputJPEG and inputWebP are image inputs of w×h pixels.
func inputPNG(w, h int) []byte  { return renderPNG(newPicture("input", 1, w, h, false)) }
func inputWebP(w, h int) []byte { return renderWebP(newPicture("input", 1, w, h, false)) }
func inputJPEG(w, h int) []byte {
	var b bytes.Buffer
	p := newPicture("input", 1, w, h, false)
	if err := jpeg.Encode(&b, p.rgba(), nil); err != nil {
		panic(err) // encoding to memory cannot fail
	}
	return b.Bytes()
}

// pngHeader is the start of a PNG of w×h pixels: its signature and IHDR
// chunk, all that the sandbox reads of an input's dimensions. It stands for
// inputs too large to draw in a test.
func pngHeader(w, h int) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	return appendChunk([]byte("\x89PNG\r\n\x1a\n"), "IHDR", ihdr)
}

// overLimits returns, for each bound of l that an image can break while it
// keeps the bounds Check tests before it, the size of such an image: Check
// then reports that bound, as Limits with only that bound would.
func overLimits(l catalog.Limits) []catalog.Size {
	side := max(l.MinSide, 1)
	long := func(n int) int { // n, or the longest side allowed
		if l.MaxSide > 0 {
			return min(n, l.MaxSide)
		}
		return n
	}
	type bound struct {
		only catalog.Limits
		size catalog.Size
	}
	var bounds []bound
	if l.MinSide > 0 {
		bounds = append(bounds, bound{catalog.Limits{MinSide: l.MinSide}, catalog.Size{W: l.MinSide - 1, H: l.MinSide}})
	}
	if l.MaxSide > 0 {
		bounds = append(bounds, bound{catalog.Limits{MaxSide: l.MaxSide}, catalog.Size{W: l.MaxSide + 1, H: side}})
	}
	if l.MinPixels > 0 {
		bounds = append(bounds, bound{catalog.Limits{MinPixels: l.MinPixels}, catalog.Size{W: (l.MinPixels+side-1)/side - 1, H: side}})
	}
	if l.MaxPixels > 0 {
		w := long(int(math.Sqrt(float64(l.MaxPixels))) + 1)
		bounds = append(bounds, bound{catalog.Limits{MaxPixels: l.MaxPixels}, catalog.Size{W: w, H: l.MaxPixels/w + 1}})
	}
	if l.MaxAspect > 0 {
		h := side
		for int(l.MaxAspect*float64(h)+1)*h < l.MinPixels {
			h++
		}
		bounds = append(bounds, bound{catalog.Limits{MaxAspect: l.MaxAspect}, catalog.Size{W: int(l.MaxAspect*float64(h)) + 1, H: h}})
	}
	var out []catalog.Size
	for _, b := range bounds {
		if got := l.Check(b.size.W, b.size.H); got != "" && got == b.only.Check(b.size.W, b.size.H) {
			out = append(out, b.size)
		}
	}
	return out
}

// goodValues returns values the API accepts for f: both ends of a range,
// every enum value, a short text and a small image.
func goodValues(f *catalog.Field) []formField {
	switch f.Type {
	case catalog.Text:
		out := []formField{fv(f.Name, "a red bicycle")}
		if f.Max > 0 {
			out = append(out, fv(f.Name, strings.Repeat("é", int(f.Max)))) // characters, not bytes
		}
		return out
	case catalog.Integer, catalog.Number:
		return []formField{fv(f.Name, number(f.Min)), fv(f.Name, number(f.Max))}
	case catalog.Enum:
		out := make([]formField, len(f.Enum))
		for i, v := range f.Enum {
			out[i] = fv(f.Name, v)
		}
		return out
	case catalog.Image:
		// Within every service's limits.
		return []formField{file(f.Name, inputPNG(96, 64)), file(f.Name, inputJPEG(96, 64)), file(f.Name, inputWebP(96, 64))}
	}
	return nil
}

// badValues returns values the API refuses for f.
func badValues(f *catalog.Field) []formField {
	var out []formField
	switch f.Type {
	case catalog.Text:
		if f.Min > 0 {
			out = append(out, fv(f.Name, ""))
		}
		if f.Max > 0 {
			out = append(out, fv(f.Name, strings.Repeat("a", int(f.Max)+1)))
		}
		out = append(out, fv(f.Name, "\xff\xfe"), file(f.Name, []byte("a file")))
	case catalog.Integer:
		out = append(out, fv(f.Name, number(f.Min-1)), fv(f.Name, number(f.Max+1)), fv(f.Name, "1.5"), fv(f.Name, "seven"))
	case catalog.Number:
		out = append(out, fv(f.Name, number(f.Min-1)), fv(f.Name, number(f.Max+1)), fv(f.Name, "NaN"), fv(f.Name, "half"))
	case catalog.Enum:
		out = append(out, fv(f.Name, "not-a-"+f.Name), fv(f.Name, ""))
	case catalog.Image:
		out = append(out, file(f.Name, []byte("not an image")), fv(f.Name, "a text value"),
			file(f.Name, []byte("GIF89a\x60\x00\x40\x00")), file(f.Name, inputPNG(96, 64)[:20]))
		for _, sz := range overLimits(f.Limits) {
			out = append(out, file(f.Name, pngHeader(sz.W, sz.H)))
		}
	}
	return out
}

// derivedValue is what a client sends for a derived field: sd3's mode is
// image-to-image exactly when an image is sent.
func derivedValue(t *testing.T, name string, withImage bool) string {
	t.Helper()
	if name != "mode" {
		t.Fatalf("the test knows no rule for derived field %q", name)
	}
	if withImage {
		return "image-to-image"
	}
	return "text-to-image"
}

// complete adds to fields what the operation's Requires rules ask for and
// the derived fields' values, so that a request differs from a valid one
// only by what a test case means.
func complete(t *testing.T, op *catalog.Operation, fields []formField) []formField {
	t.Helper()
	has := func(name string) bool {
		return slices.ContainsFunc(fields, func(f formField) bool { return f.name == name })
	}
	for changed := true; changed; {
		changed = false
		for _, r := range op.Rules {
			if r.Kind != catalog.Requires || !has(r.If) {
				continue
			}
			for _, name := range r.Fields {
				if !has(name) {
					f, _ := op.Field(name)
					fields = append(fields, goodValues(f)[0])
					changed = true
				}
			}
		}
	}
	withImage := slices.ContainsFunc(op.Images(), has)
	for _, f := range op.Fields {
		if f.Derived && !has(f.Name) {
			fields = append(fields, fv(f.Name, derivedValue(t, f.Name, withImage)))
		}
	}
	return fields
}

// formCase is one request to a Stable Image service and the answer wanted.
type formCase struct {
	name   string
	fields []formField
	status int
	field  string // a field the 400 answer's errors must name
}

// validationCases derives, from an operation's catalogue row, requests
// that must pass and requests that must fail and which field they fail on:
// every field's good and bad values, required fields left out, fields sent
// twice, an unknown field, the derived fields and every combination rule.
func validationCases(t *testing.T, op *catalog.Operation) []formCase {
	base := baseForm(op)
	with := func(extra ...formField) []formField { return append(slices.Clone(base), extra...) }
	without := func(name string) []formField {
		return slices.DeleteFunc(slices.Clone(base), func(f formField) bool { return f.name == name })
	}
	cases := []formCase{
		{"required fields only", complete(t, op, base), 200, ""},
		{"unknown field steps", complete(t, op, with(fv("steps", "30"))), 400, "steps"},
	}
	for _, f := range op.Fields {
		if f.Derived {
			// The derived value that contradicts the request.
			cases = append(cases, formCase{f.Name + " contradicting no image",
				replace(complete(t, op, with()), f.Name, derivedValue(t, f.Name, true)), 400, f.Name})
			if op.TakesImages() {
				img := goodValues(must(op.Field(op.Images()[0])))[0]
				cases = append(cases, formCase{f.Name + " contradicting an image",
					replace(complete(t, op, with(img)), f.Name, derivedValue(t, f.Name, false)), 400, f.Name})
			}
			continue
		}
		for i, g := range goodValues(&f) {
			cases = append(cases, formCase{fmt.Sprintf("%s good %d", f.Name, i), complete(t, op, append(without(f.Name), g)), 200, ""})
		}
		for i, b := range badValues(&f) {
			cases = append(cases, formCase{fmt.Sprintf("%s bad %d", f.Name, i), complete(t, op, append(without(f.Name), b)), 400, f.Name})
		}
		if f.Required {
			cases = append(cases, formCase{f.Name + " missing", complete(t, op, without(f.Name)), 400, f.Name})
		}
		twice := goodValues(&f)[0]
		cases = append(cases, formCase{f.Name + " twice", complete(t, op, append(with(twice), twice)), 400, f.Name})
	}
	for _, r := range op.Rules {
		switch r.Kind {
		case catalog.Requires:
			fields := with(goodValues(must(op.Field(r.If)))[0])
			for _, name := range r.Fields {
				cases = append(cases, formCase{fmt.Sprintf("%s without %s", r.If, name), fields, 400, name})
			}
		case catalog.Excludes:
			for _, name := range r.Fields {
				fields := complete(t, op, with(goodValues(must(op.Field(r.If)))[0], goodValues(must(op.Field(name)))[0]))
				cases = append(cases, formCase{fmt.Sprintf("%s with %s", name, r.If), fields, 400, name})
			}
		case catalog.OneOf:
			var fields []formField
			for _, f := range base {
				if !slices.Contains(r.Fields, f.name) {
					fields = append(fields, f)
				}
			}
			cases = append(cases, formCase{"none of " + strings.Join(r.Fields, ", "), complete(t, op, fields), 400, strings.Join(r.Fields, ", ")})
		}
	}
	return cases
}

// baseForm returns the fields every request to op needs: the required ones
// and, for each OneOf rule, its first field (a margin's largest value, as
// an outpaint must grow by something).
func baseForm(op *catalog.Operation) []formField {
	var base []formField
	for _, f := range op.Fields {
		if f.Required {
			base = append(base, goodValues(&f)[0])
		}
	}
	for _, r := range op.Rules {
		has := func(name string) bool {
			return slices.ContainsFunc(base, func(f formField) bool { return f.name == name })
		}
		if r.Kind == catalog.OneOf && !slices.ContainsFunc(r.Fields, has) {
			good := goodValues(must(op.Field(r.Fields[0])))
			base = append(base, good[len(good)-1])
		}
	}
	return base
}

// validForm returns a valid request to op with the fewest fields.
func validForm(t *testing.T, op *catalog.Operation) []formField {
	return complete(t, op, baseForm(op))
}

// replace sets the value of the field named name.
func replace(fields []formField, name, value string) []formField {
	out := slices.Clone(fields)
	for i := range out {
		if out[i].name == name {
			out[i].value = value
		}
	}
	return out
}

func must(f *catalog.Field, ok bool) *catalog.Field {
	if !ok {
		panic("no such field")
	}
	return f
}

// allOps returns every catalogue operation, all of which the sandbox
// serves.
func allOps() []*catalog.Operation {
	var ops []*catalog.Operation
	for _, svc := range catalog.Services() {
		op, _ := catalog.Lookup(svc)
		ops = append(ops, op)
	}
	return ops
}

func TestStableValidation(t *testing.T) {
	s := newServer(t, Config{RateLimit: -1, Pricer: free})
	for _, op := range allOps() {
		for _, tc := range validationCases(t, op) {
			t.Run(op.Service+"/"+tc.name, func(t *testing.T) {
				rec := serve(s, stablePost(t, op.Service, tc.fields, "image/*"))
				if rec.Code != tc.status {
					t.Fatalf("status = %d, want %d; body %.500s", rec.Code, tc.status, rec.Body)
				}
				if tc.status != 200 {
					e := stableErrorOf(t, rec)
					if e.Name != "bad_request" || !names(e, tc.field) {
						t.Errorf("errors = %s %q, want bad_request naming %s", e.Name, e.Errors, tc.field)
					}
				}
			})
		}
	}
}

// TestStableValidationMessages pins the wording of some answers.
func TestStableValidationMessages(t *testing.T) {
	s := newServer(t, Config{RateLimit: -1, Pricer: free})
	tests := []struct {
		name    string
		service string
		fields  []formField
		want    []string
	}{
		{"every problem at once", "generate/core",
			[]formField{fv("aspect_ratio", "7:5"), fv("seed", "-1"), fv("steps", "30")},
			[]string{
				"steps: is not a parameter of generate/core",
				"prompt: is required",
				"aspect_ratio: must be one of 21:9, 16:9, 3:2, 5:4, 1:1, 4:5, 2:3, 9:16, 9:21",
				"seed: must be an integer from 0 to 4294967294",
			}},
		{"strength without image", "generate/ultra",
			[]formField{fv("prompt", "a cat"), fv("strength", "0.5")},
			[]string{"image: is required with strength"}},
		{"image without strength and with aspect ratio", "generate/sd3",
			[]formField{fv("prompt", "a cat"), fv("mode", "image-to-image"), file("image", inputPNG(64, 64)), fv("aspect_ratio", "1:1")},
			[]string{"strength: is required with image", "aspect_ratio: must not be sent with image"}},
		{"image without mode", "generate/sd3",
			[]formField{fv("prompt", "a cat"), file("image", inputPNG(64, 64)), fv("strength", "0.5")},
			[]string{"mode: must be image-to-image when an image is sent"}},
		{"cfg_scale out of range", "generate/sd3",
			[]formField{fv("prompt", "a cat"), fv("cfg_scale", "10.5")},
			[]string{"cfg_scale: must be a number from 1 to 10"}},
		{"empty prompt", "generate/core", []formField{fv("prompt", "")}, []string{"prompt: cannot be empty"}},
		{"not an image", "generate/ultra",
			[]formField{fv("prompt", "a cat"), file("image", []byte("GIF89a")), fv("strength", "0.5")},
			[]string{"image: must be a PNG, JPEG or WebP image"}},
		{"input too small", "edit/outpaint",
			[]formField{file("image", pngHeader(63, 64)), fv("left", "10")},
			[]string{"image: is 63×64; every side must be at least 64 pixels"}},
		{"input side too long", "upscale/fast",
			[]formField{file("image", pngHeader(1537, 32))},
			[]string{"image: is 1537×32; every side must be at most 1536 pixels"}},
		{"input too many pixels", "edit/remove-background",
			[]formField{file("image", inputWebP(2049, 2048))},
			[]string{"image: is 2049×2048 (4196352 pixels); the service takes at most 4194304"}},
		{"input too narrow, and the other one not an image", "control/style-transfer",
			[]formField{file("init_image", inputJPEG(161, 64)), file("style_image", []byte("\x89PNG\r\n\x1a\n"))},
			[]string{
				"init_image: is 161×64; its aspect ratio must be between 1:2.5 and 2.5:1",
				"style_image: is not a readable image: png: unexpected EOF",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(s, stablePost(t, tt.service, tt.fields, ""))
			if rec.Code != 400 {
				t.Fatalf("status = %d, want 400; body %s", rec.Code, rec.Body)
			}
			if e := stableErrorOf(t, rec); !slices.Equal(e.Errors, tt.want) {
				t.Errorf("errors =\n%q\nwant\n%q", e.Errors, tt.want)
			}
		})
	}
}

func TestStableRequestShape(t *testing.T) {
	s := newServer(t, Config{RateLimit: -1, Pricer: free})
	form := stablePost(t, "generate/core", []formField{fv("prompt", "a cat")}, "")
	body, err := io.ReadAll(form.Body)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		contentType string
		body        []byte
		field       string
	}{
		{"json body", "application/json", []byte(`{"prompt":"a cat"}`), "content-type"},
		{"no boundary", "multipart/form-data", body, "content-type"},
		{"truncated body", form.Header.Get("Content-Type"), body[:len(body)-20], "body"},
		{"no parts", form.Header.Get("Content-Type"), body[len(body)-len("--")-60-4:], "prompt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/v2beta/stable-image/generate/core", bytes.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer sk-test")
			req.Header.Set("Content-Type", tt.contentType)
			rec := serve(s, req)
			if rec.Code != 400 {
				t.Fatalf("status = %d, want 400; body %s", rec.Code, rec.Body)
			}
			if e := stableErrorOf(t, rec); !names(e, tt.field) {
				t.Errorf("errors %q do not name %s", e.Errors, tt.field)
			}
		})
	}
}

func TestStablePayloadTooLarge(t *testing.T) {
	s := newServer(t, Config{Key: "sk-right", Pricer: free})
	big := strings.Repeat("a", catalog.MaxBody)
	for _, key := range []string{"sk-right", "sk-wrong"} {
		req := stablePost(t, "generate/core", []formField{fv("prompt", "a cat"), fv("negative_prompt", big)}, "")
		req.Header.Set("Authorization", "Bearer "+key)
		rec := serve(s, req)
		e := stableErrorOf(t, rec)
		want := []string{"body: payloads cannot be larger than 10MiB in size"}
		if rec.Code != 413 || e.Name != "payload_too_large" || !slices.Equal(e.Errors, want) {
			t.Errorf("key %s: 11 MiB body = %d %s %q, want 413 payload_too_large %q", key, rec.Code, e.Name, e.Errors, want)
		}
	}
	// An image input counts too, and is read to its end whatever its
	// header says.
	huge := append(pngHeader(512, 512), make([]byte, catalog.MaxBody)...)
	req := stablePost(t, "upscale/fast", []formField{file("image", huge)}, "")
	if rec := serve(s, req); rec.Code != 413 || stableErrorOf(t, rec).Name != "payload_too_large" {
		t.Errorf("an 11 MiB image = %d %s, want 413 payload_too_large", rec.Code, rec.Body)
	}
	big10 := append(pngHeader(512, 512), make([]byte, catalog.MaxBody-2048)...)
	req = stablePost(t, "upscale/fast", []formField{file("image", big10)}, "")
	req.Header.Set("Authorization", "Bearer sk-right")
	if rec := serve(s, req); rec.Code != 200 {
		t.Errorf("a 10 MiB - 2 KiB image = %d %s, want 200", rec.Code, rec.Body)
	} else {
		checkPNGSize(t, rec.Body.Bytes(), 2048, 2048)
	}
	// Just under the cap is read whole, and refused for its prompt's length.
	req = stablePost(t, "generate/core", []formField{fv("prompt", "a cat"), fv("negative_prompt", big[:catalog.MaxBody-1024])}, "")
	if rec := serve(s, req); rec.Code != 400 || !names(stableErrorOf(t, rec), "negative_prompt") {
		t.Errorf("10 MiB - 1 KiB body = %d %s, want 400 about negative_prompt", rec.Code, rec.Body)
	}
}

func TestStableValidationBeforeAuth(t *testing.T) {
	s := newServer(t, Config{Key: "sk-right", Pricer: free})
	bad := []formField{fv("prompt", "a cat"), fv("aspect_ratio", "7:5")}
	good := []formField{fv("prompt", "a cat")}
	tests := []struct {
		name   string
		fields []formField
		auth   string // "-" for no header
		status int
		err    string
	}{
		{"bad field, wrong key", bad, "Bearer sk-wrong", 400, "bad_request"},
		{"bad field, no key", bad, "-", 400, "bad_request"},
		{"good fields, wrong key", good, "Bearer sk-wrong", 401, "unauthorized"},
		{"good fields, no key", good, "-", 401, "unauthorized"},
		{"good fields, right key", good, "Bearer sk-right", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := stablePost(t, "generate/core", tt.fields, "")
			req.Header.Del("Authorization")
			if tt.auth != "-" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := serve(s, req)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.err == "" {
				return
			}
			e := stableErrorOf(t, rec)
			if e.Name != tt.err {
				t.Errorf("name = %s, want %s", e.Name, tt.err)
			}
			if strings.Contains(rec.Body.String(), "sk-right") {
				t.Errorf("answer %s reveals the key", rec.Body)
			}
		})
	}
}

// wantSizes are the output sizes the live API gave per aspect ratio: Ultra
// and SD 3.5 about one megapixel, Core 1.5 times each side.
var wantSizes = map[string][2]int{
	"21:9": {1536, 640}, "16:9": {1344, 768}, "3:2": {1216, 832}, "5:4": {1088, 896}, "1:1": {1024, 1024},
	"4:5": {896, 1088}, "2:3": {832, 1216}, "9:16": {768, 1344}, "9:21": {640, 1536},
}

func TestStableSizes(t *testing.T) {
	s := newServer(t, Config{RateLimit: -1, Pricer: free})
	for _, svc := range []string{"generate/core", "generate/sd3", "generate/ultra"} {
		scale := 1.0
		if svc == "generate/core" {
			scale = 1.5
		}
		for _, ratio := range append(catalog.AspectRatios(), "") {
			t.Run(svc+"/"+ratio, func(t *testing.T) {
				fields := []formField{fv("prompt", "a harbour")}
				want := wantSizes["1:1"] // the default
				if ratio != "" {
					fields = append(fields, fv("aspect_ratio", ratio))
					want = wantSizes[ratio]
				}
				rec := serve(s, stablePost(t, svc, fields, ""))
				if rec.Code != 200 {
					t.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				checkPNGSize(t, rec.Body.Bytes(), int(float64(want[0])*scale), int(float64(want[1])*scale))
			})
		}
	}
	// Live checks: Core 1:1 → 1536×1536, Ultra 16:9 → 1344×768.
	for _, tt := range []struct {
		svc, ratio string
		w, h       int
	}{{"generate/core", "1:1", 1536, 1536}, {"generate/ultra", "16:9", 1344, 768}, {"generate/sd3", "1:1", 1024, 1024}} {
		rec := serve(s, stablePost(t, tt.svc, []formField{fv("prompt", "x"), fv("aspect_ratio", tt.ratio)}, ""))
		checkPNGSize(t, rec.Body.Bytes(), tt.w, tt.h)
	}
}

func TestStableImageToImageSizes(t *testing.T) {
	s := newServer(t, Config{RateLimit: -1, Pricer: free})
	tests := []struct {
		svc          string
		inW, inH     int
		wantW, wantH int
	}{
		{"generate/sd3", 1536, 1536, 1024, 1024}, // live: a 1536² input gave 1024²
		{"generate/ultra", 1536, 1536, 1024, 1024},
		{"generate/sd3", 1500, 1000, 1216, 832}, // 3:2 is the nearest ratio
		{"generate/ultra", 600, 900, 832, 1216}, // 2:3
		{"generate/sd3", 300, 1000, 640, 1536},  // 9:21 is the nearest to 3:10
	}
	for _, tt := range tests {
		fields := []formField{fv("prompt", "the same, at dusk"), file("image", inputPNG(tt.inW, tt.inH)), fv("strength", "0.6")}
		if tt.svc == "generate/sd3" {
			fields = append(fields, fv("mode", "image-to-image"))
		}
		rec := serve(s, stablePost(t, tt.svc, fields, ""))
		if rec.Code != 200 {
			t.Fatalf("%s %dx%d input: status %d: %s", tt.svc, tt.inW, tt.inH, rec.Code, rec.Body)
		}
		checkPNGSize(t, rec.Body.Bytes(), tt.wantW, tt.wantH)
	}
}

// TestLiveSizes checks the output sizes of the edit, control and upscale
// services against what the live API returned on 2026-09-22
// (aself101/stability-ai-api docs/LIVE-BATTERY-2026-09-22.md @ 10fe5ea).
func TestLiveSizes(t *testing.T) {
	s := newServer(t, Config{RateLimit: -1, Pricer: free, AsyncDelay: -1})
	big, small := inputPNG(1536, 1536), inputPNG(512, 512)
	tests := []struct {
		service string
		fields  []formField
		w, h    int
	}{
		{"edit/erase", []formField{file("image", big)}, 1536, 1536},
		{"edit/inpaint", []formField{file("image", big), fv("prompt", "a vase")}, 1536, 1536},
		{"edit/search-and-replace", []formField{file("image", big), fv("prompt", "a vase"), fv("search_prompt", "cup")}, 1536, 1536},
		{"edit/search-and-recolor", []formField{file("image", big), fv("prompt", "red"), fv("select_prompt", "cup")}, 1536, 1536},
		{"edit/remove-background", []formField{file("image", big)}, 1536, 1536},
		{"edit/outpaint", []formField{file("image", big), fv("left", "256"), fv("right", "256")}, 2048, 1536},
		{"edit/replace-background-and-relight", []formField{file("subject_image", big), fv("background_prompt", "a beach")}, 1536, 1536},
		{"control/sketch", []formField{file("image", big), fv("prompt", "a house")}, 1536, 1536},
		{"control/structure", []formField{file("image", big), fv("prompt", "a house")}, 1536, 1536},
		{"control/style", []formField{file("image", big), fv("prompt", "a house"), fv("aspect_ratio", "16:9")}, 1365, 768},
		{"control/style-transfer", []formField{file("init_image", inputPNG(1024, 1024)), file("style_image", small)}, 1024, 1024},
		{"upscale/fast", []formField{file("image", small)}, 2048, 2048},
		{"upscale/conservative", []formField{file("image", small), fv("prompt", "a house")}, 3112, 3112},
		{"upscale/creative", []formField{file("image", small), fv("prompt", "a house")}, 3152, 3152},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			op, _ := catalog.Lookup(tt.service)
			rec := fetch(t, s, op, tt.fields, "image/*", "sk-test")
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			checkPNGSize(t, rec.Body.Bytes(), tt.w, tt.h)
		})
	}
}

// fetch sends a request to op with key and returns the answer with the
// image: the POST's for a synchronous service; for an async one, that of
// GET /v2beta/results/{id} with the id the submit gave (the server must
// complete generations at once).
func fetch(t *testing.T, s *Server, op *catalog.Operation, fields []formField, accept, key string) *httptest.ResponseRecorder {
	t.Helper()
	req := stablePost(t, op.Service, fields, accept)
	req.Header.Set("Authorization", "Bearer "+key)
	rec := serve(s, req)
	if !op.Async || rec.Code != 200 {
		return rec
	}
	return poll(t, s, "/v2beta/results/"+submitted(t, rec), accept, key)
}

// submitted returns the generation id of an async submit's answer.
func submitted(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); rec.Code != 200 || ct != "application/json" {
		t.Fatalf("submit: %d %s: %s, want 200 application/json", rec.Code, ct, rec.Body)
	}
	var b submitBody
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || !generationID.MatchString(b.ID) {
		t.Fatalf("submit answer %s (%v): want {id} with 64 hex digits", rec.Body, err)
	}
	return b.ID
}

var generationID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// poll gets a result path with key.
func poll(t *testing.T, s *Server, path, accept, key string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return serve(s, req)
}

// formValue is what catalog.Operation.OutputSize reads of fields: a text
// value, a mark for a file, "" for a field not sent.
func formValue(fields []formField) func(string) string {
	return func(name string) string {
		for _, f := range fields {
			if f.name == name {
				if f.file != nil {
					return "(file)"
				}
				return f.value
			}
		}
		return ""
	}
}

// TestEveryService sends a valid request to every service of the
// catalogue, in every output format it offers as image bytes and in its
// default format as JSON, and checks the answer's format and size against
// the catalogue's OutputSize; the async services are submitted and
// fetched. (JSON in every format would only encode the same images again;
// a JPEG of an upscale's 10 megapixels takes seconds under -race.)
func TestEveryService(t *testing.T) {
	s := newServer(t, Config{RateLimit: -1, Pricer: free, AsyncDelay: -1})
	for _, op := range allOps() {
		format, _ := op.Field("output_format")
		for _, f := range format.Enum {
			accepts := []string{"image/*"}
			if f == format.Default {
				accepts = append(accepts, "application/json")
			}
			for _, accept := range accepts {
				t.Run(op.Service+"/"+f+"/"+accept, func(t *testing.T) {
					fields := append(validForm(t, op), fv("output_format", f))
					wantSeed := uint32(0) // any
					if _, ok := op.Field("seed"); ok {
						fields, wantSeed = append(fields, fv("seed", "7")), 7
					}
					rec := fetch(t, s, op, fields, accept, "sk-test")
					if rec.Code != 200 {
						t.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
					data := rec.Body.Bytes()
					if accept == "application/json" {
						var b stableJSON
						if err := json.Unmarshal(data, &b); err != nil || b.Seed == 0 || wantSeed != 0 && b.Seed != wantSeed || b.FinishReason != "SUCCESS" {
							t.Fatalf("JSON answer %.200s (%v), want seed %d (0: any) and SUCCESS", data, err, wantSeed)
						}
						var err error
						if data, err = base64.StdEncoding.DecodeString(b.Image); err != nil {
							t.Fatal(err)
						}
					}
					info, err := imagefile.Read(bytes.NewReader(data))
					want, ok := op.OutputSize(formValue(fields), catalog.Size{W: 96, H: 64})
					if err != nil || !ok || string(info.Format) != f || info.Width != want.W || info.Height != want.H {
						t.Errorf("answer %+v (%v), want %s %v (%v)", info, err, f, want, ok)
					}
				})
			}
		}
	}
}

// checkPNGSize checks a PNG's size from its header; TestRenderPNGDecodes
// decodes the encoder's output in full.
func checkPNGSize(t *testing.T, data []byte, width, height int) {
	t.Helper()
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil || cfg.Width != width || cfg.Height != height {
		t.Errorf("PNG %dx%d (%v), want %dx%d", cfg.Width, cfg.Height, err, width, height)
	}
}

// checkWebP parses a WebP file's RIFF and VP8L headers (RFC 9649 §2 and
// §3.2) and checks the size they give.
func checkWebP(t *testing.T, data []byte, width, height int) {
	t.Helper()
	if len(data) < 25 || string(data[0:4]) != "RIFF" || string(data[8:16]) != "WEBPVP8L" {
		t.Fatalf("not a lossless WebP: % x", data[:min(len(data), 16)])
	}
	if riff := binary.LittleEndian.Uint32(data[4:]); int(riff) != len(data)-8 {
		t.Errorf("RIFF size = %d, want %d", riff, len(data)-8)
	}
	chunk := int(binary.LittleEndian.Uint32(data[16:]))
	if pad := chunk % 2; 20+chunk+pad != len(data) {
		t.Errorf("VP8L chunk of %d bytes in a %d-byte file", chunk, len(data))
	}
	if data[20] != 0x2f {
		t.Errorf("VP8L signature = %#x, want 0x2f", data[20])
	}
	v := binary.LittleEndian.Uint32(data[21:])
	w, h, version := int(v&(1<<14-1))+1, int(v>>14&(1<<14-1))+1, v>>29
	if w != width || h != height || version != 0 {
		t.Errorf("VP8L header = %dx%d version %d, want %dx%d version 0", w, h, version, width, height)
	}
}

func TestStableFormats(t *testing.T) {
	s := newServer(t, Config{RateLimit: -1, Pricer: free})
	for _, format := range []string{"png", "jpeg", "webp"} {
		t.Run(format, func(t *testing.T) {
			fields := []formField{fv("prompt", "a lighthouse"), fv("aspect_ratio", "21:9"), fv("seed", "77"), fv("output_format", format)}
			rec := serve(s, stablePost(t, "generate/ultra", fields, "image/*"))
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			h := rec.Header()
			if ct := h.Get("Content-Type"); ct != "image/"+format {
				t.Errorf("Content-Type = %q, want image/%s", ct, format)
			}
			if got, want := h.Get("Content-Length"), strconv.Itoa(rec.Body.Len()); got != want {
				t.Errorf("Content-Length = %s, want %s", got, want)
			}
			raw := rec.Body.Bytes()
			switch format {
			case "png":
				checkPNG(t, raw, 1536, 640)
			case "jpeg":
				img, err := jpeg.Decode(bytes.NewReader(raw))
				if err != nil {
					t.Fatalf("jpeg.Decode = %v", err)
				}
				if b := img.Bounds(); b.Dx() != 1536 || b.Dy() != 640 {
					t.Errorf("JPEG size = %v, want 1536x640", b)
				}
			case "webp":
				checkWebP(t, raw, 1536, 640)
			}

			// The exact type is accepted too, and the same request in JSON
			// carries the same image.
			if rec := serve(s, stablePost(t, "generate/ultra", fields, "image/"+format)); !bytes.Equal(rec.Body.Bytes(), raw) {
				t.Errorf("accept image/%s: a different answer (%d)", format, rec.Code)
			}
			rec = serve(s, stablePost(t, "generate/ultra", fields, "application/json"))
			if ct := rec.Header().Get("Content-Type"); rec.Code != 200 || ct != `application/json; type="image/`+format+`"` {
				t.Fatalf("JSON answer: %d %q, want 200 application/json; type=image/%s", rec.Code, ct, format)
			}
			if rec.Header().Get("Finish-Reason") != "" || rec.Header().Get("Seed") != "" || !hexID.MatchString(rec.Header().Get("X-Request-Id")) {
				t.Errorf("JSON answer headers %v: want x-request-id and no finish-reason or seed", rec.Header())
			}
			var body stableJSON
			dec := json.NewDecoder(rec.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				t.Fatal(err)
			}
			img, err := base64.StdEncoding.DecodeString(body.Image)
			if err != nil || !bytes.Equal(img, raw) || body.Seed != 77 || body.FinishReason != "SUCCESS" {
				t.Errorf("JSON answer = seed %d %s, image equal %v (%v); want seed 77 SUCCESS and the raw image", body.Seed, body.FinishReason, bytes.Equal(img, raw), err)
			}
		})
	}
}

func TestRenderWebPSizes(t *testing.T) {
	for _, sz := range [][2]int{{1, 1}, {7, 5}, {1024, 1024}, {2304, 960}, {4097, 3}, {3, 4097}} {
		for _, filtered := range []bool{false, true} {
			data := renderWebP(newPicture("a mug", 3, sz[0], sz[1], filtered))
			checkWebP(t, data, sz[0], sz[1])
			if info, err := imagefile.Read(bytes.NewReader(data)); err != nil || info.Width != sz[0] || info.Height != sz[1] {
				t.Errorf("imagefile.Read = %+v, %v; want %dx%d", info, err, sz[0], sz[1])
			}
		}
	}
	a := renderWebP(newPicture("a mug", 3, 512, 512, false))
	if !bytes.Equal(a, renderWebP(newPicture("a mug", 3, 512, 512, false))) {
		t.Error("the same picture gave different WebP files")
	}
	if bytes.Equal(a, renderWebP(newPicture("a mug", 4, 512, 512, false))) {
		t.Error("different seeds gave the same WebP file")
	}
}

func TestPrefixCode(t *testing.T) {
	// Decode as RFC 9649 §3.7.2.2 does and compare.
	for v := range 4096 {
		prefix, extraBits, extra := prefixCode(v)
		got := prefix + 1
		if prefix >= 4 {
			eb := (prefix - 2) >> 1
			if uint(eb) != extraBits {
				t.Fatalf("prefixCode(%d): %d extra bits, the decoder reads %d", v, extraBits, eb)
			}
			got = (2+prefix&1)<<eb + extra + 1
		}
		if got != v+1 || prefix > 23 {
			t.Fatalf("prefixCode(%d) = %d, %d, %d: decodes to %d", v, prefix, extraBits, extra, got-1)
		}
	}
}

func TestStableAccept(t *testing.T) {
	s := newServer(t, Config{RateLimit: -1, Pricer: free})
	tests := []struct {
		accept string
		status int
		ctype  string
	}{
		{"", 200, "image/png"},
		{"image/*", 200, "image/png"},
		{"*/*", 200, "image/png"},
		{"image/png", 200, "image/png"},
		{"application/json", 200, `application/json; type="image/png"`},
		{"text/html, application/json;q=0.9", 200, `application/json; type="image/png"`},
		{"application/json; type=image/png", 200, `application/json; type="image/png"`}, // as the spec writes it
		{"image/png; q=0.5", 200, "image/png"},
		{"image/jpeg", 400, ""},
		{"text/html", 400, ""},
	}
	for _, tt := range tests {
		rec := serve(s, stablePost(t, "generate/core", []formField{fv("prompt", "a cat")}, tt.accept))
		if rec.Code != tt.status {
			t.Errorf("accept %q: status %d, want %d", tt.accept, rec.Code, tt.status)
			continue
		}
		if tt.status == 400 {
			if !names(stableErrorOf(t, rec), "accept") {
				t.Errorf("accept %q: errors do not name accept", tt.accept)
			}
		} else if ct := rec.Header().Get("Content-Type"); ct != tt.ctype {
			t.Errorf("accept %q: Content-Type %q, want %q", tt.accept, ct, tt.ctype)
		}
	}
}

func TestStableHeadersAndSeeds(t *testing.T) {
	s := newServer(t, Config{RateLimit: -1, Pricer: free, FilterWords: []string{"Castle"}, Seed: 5})
	get := func(fields ...formField) http.Header {
		rec := serve(s, stablePost(t, "generate/sd3", fields, "image/*"))
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		return rec.Header()
	}
	h := get(fv("prompt", "a house"), fv("seed", "4294967294"))
	if h.Get("Finish-Reason") != "SUCCESS" || h.Get("Seed") != "4294967294" || !hexID.MatchString(h.Get("X-Request-Id")) {
		t.Errorf("headers = %v, want finish-reason SUCCESS, seed 4294967294 and a request id", h)
	}
	for _, fields := range [][]formField{
		{fv("prompt", "a CASTLE")},
		{fv("prompt", "a house"), fv("negative_prompt", "castles")},
	} {
		if got := get(fields...).Get("Finish-Reason"); got != "CONTENT_FILTERED" {
			t.Errorf("filter word in %v: finish-reason %s, want CONTENT_FILTERED", fields, got)
		}
	}
	ids := map[string]bool{}
	seeds := map[string]bool{}
	for _, seed := range []string{"0", "0", "0", ""} {
		fields := []formField{fv("prompt", "a house")}
		if seed != "" {
			fields = append(fields, fv("seed", seed))
		}
		h := get(fields...)
		n, err := strconv.ParseUint(h.Get("Seed"), 10, 64)
		if err != nil || n < 1 || n > 4294967294 {
			t.Errorf("random seed %q (%v), want 1 to 4294967294", h.Get("Seed"), err)
		}
		seeds[h.Get("Seed")] = true
		ids[h.Get("X-Request-Id")] = true
	}
	if len(seeds) != 4 || len(ids) != 4 {
		t.Errorf("4 requests for random seeds: %d seeds, %d request ids; want 4 of each", len(seeds), len(ids))
	}
	if st := s.Stats(); st.Filtered != 2 || st.Generations != 7 || st.Images != 7 {
		t.Errorf("Stats = %+v, want 7 generations, 2 filtered", st)
	}
}

func TestStableDeterminism(t *testing.T) {
	answer := func(serverSeed int64, fields ...formField) []byte {
		s := newServer(t, Config{Pricer: free, Seed: serverSeed})
		return serve(s, stablePost(t, "generate/core", fields, "")).Body.Bytes()
	}
	a := answer(1, fv("prompt", "a mug"), fv("seed", "9"))
	if !bytes.Equal(a, answer(2, fv("prompt", "a mug"), fv("seed", "9"))) {
		t.Error("the same request and seed gave different images on two servers")
	}
	for _, other := range [][]byte{
		answer(1, fv("prompt", "a cup"), fv("seed", "9")),
		answer(1, fv("prompt", "a mug"), fv("seed", "10")),
		answer(1, fv("prompt", "a mug"), fv("seed", "9"), fv("style_preset", "anime")),
	} {
		if bytes.Equal(a, other) {
			t.Error("a different prompt, seed or style gave the same image")
		}
	}
	if !bytes.Equal(answer(3, fv("prompt", "a mug")), answer(3, fv("prompt", "a mug"))) {
		t.Error("a random seed differs between servers with the same Seed")
	}
}

// TestStableDeterminismFollowsInput checks that an edit's picture follows
// its input's bytes, not only its size, and nothing else.
func TestStableDeterminismFollowsInput(t *testing.T) {
	s := newServer(t, Config{Pricer: free, RateLimit: -1})
	answer := func(img []byte) []byte {
		rec := serve(s, stablePost(t, "edit/erase", []formField{file("image", img), fv("seed", "3")}, ""))
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		return rec.Body.Bytes()
	}
	a := answer(inputPNG(96, 64))
	if !bytes.Equal(a, answer(inputPNG(96, 64))) {
		t.Error("the same input gave different images")
	}
	if bytes.Equal(a, answer(renderPNG(newPicture("another input", 1, 96, 64, false)))) {
		t.Error("another input of the same size gave the same image")
	}
}

func TestStableModeration(t *testing.T) {
	s := newServer(t, Config{Key: "sk-test", ModerateWords: []string{" Forbidden "}, Pricer: flat(3 * cost.Credit)})
	for _, fields := range [][]formField{
		{fv("prompt", "something FORBIDDEN")},
		{fv("prompt", "a house"), fv("negative_prompt", "forbidden things")},
	} {
		rec := serve(s, stablePost(t, "generate/core", fields, ""))
		e := stableErrorOf(t, rec)
		want := []string{"Your request was flagged by our content moderation system, as a result your request was denied and you were not charged."}
		if rec.Code != 403 || e.Name != "content_moderation" || !slices.Equal(e.Errors, want) {
			t.Errorf("%v: %d %s %q, want 403 content_moderation", fields, rec.Code, e.Name, e.Errors)
		}
	}
	// Moderation comes after authentication.
	req := stablePost(t, "generate/core", []formField{fv("prompt", "forbidden")}, "")
	req.Header.Set("Authorization", "Bearer sk-other")
	if rec := serve(s, req); rec.Code != 401 {
		t.Errorf("moderated prompt with a wrong key: %d, want 401", rec.Code)
	}
	want := Stats{Requests: 3, Moderated: 2, Rejected: 1, Balance: DefaultBalance}
	if got := s.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v (nothing charged)", got, want)
	}
}

func TestStableCharging(t *testing.T) {
	var priced []string
	p := pricer{service: func(service, model string) (cost.Credits, error) {
		priced = append(priced, service+" "+model)
		switch {
		case service == "generate/ultra":
			return 8 * cost.Credit, nil
		case service == "generate/sd3" && model == "sd3.5-flash":
			return 2*cost.Credit + cost.Credit/2, nil
		case service == "generate/sd3" && model == "sd3.5-large":
			return 6*cost.Credit + cost.Credit/2, nil
		}
		return 0, fmt.Errorf("no price for %s %q", service, model)
	}}
	s := newServer(t, Config{Pricer: p, Balance: 20 * cost.Credit, RateLimit: -1, FilterWords: []string{"castle"}})
	steps := []struct {
		service string
		fields  []formField
		status  int
		name    string
		balance cost.Credits // after the request
	}{
		{"generate/ultra", []formField{fv("prompt", "a house")}, 200, "", 12 * cost.Credit},
		{"generate/sd3", []formField{fv("prompt", "a house"), fv("model", "sd3.5-flash")}, 200, "", 9*cost.Credit + cost.Credit/2},
		{"generate/sd3", []formField{fv("prompt", "a castle")}, 200, "", 3 * cost.Credit}, // default model; filtered is charged
		{"generate/sd3", []formField{fv("prompt", "a house"), fv("model", "sd3.5-large")}, 402, "insufficient_balance", 3 * cost.Credit},
		{"generate/sd3", []formField{fv("prompt", "a house"), fv("model", "sd3.5-medium")}, 500, "internal_error", 3 * cost.Credit}, // no price
		{"generate/sd3", []formField{fv("prompt", "a house"), fv("model", "sd3.5-xl")}, 400, "bad_request", 3 * cost.Credit},
		{"generate/sd3", []formField{fv("prompt", "a house"), fv("model", "sd3.5-flash")}, 200, "", cost.Credit / 2},
	}
	for i, st := range steps {
		rec := serve(s, stablePost(t, st.service, st.fields, ""))
		if rec.Code != st.status {
			t.Fatalf("step %d: status %d, want %d: %s", i, rec.Code, st.status, rec.Body)
		}
		if st.name != "" {
			if e := stableErrorOf(t, rec); e.Name != st.name {
				t.Errorf("step %d: name %s, want %s", i, e.Name, st.name)
			}
		}
		if got := s.Stats().Balance; got != st.balance {
			t.Errorf("step %d: balance %v, want %v", i, got, st.balance)
		}
	}
	wantPriced := []string{"generate/ultra ", "generate/sd3 sd3.5-flash", "generate/sd3 sd3.5-large", "generate/sd3 sd3.5-large", "generate/sd3 sd3.5-medium", "generate/sd3 sd3.5-flash"}
	if !slices.Equal(priced, wantPriced) {
		t.Errorf("priced %q, want %q", priced, wantPriced)
	}
	if st := s.Stats(); st.Charged != 19*cost.Credit+cost.Credit/2 || st.Generations != 4 || st.Filtered != 1 || st.Failed != 1 || st.Rejected != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestStableDefaultPriceSheet(t *testing.T) {
	sheet, err := cost.LookupSheet(cost.DefaultSheet)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Config{})
	var want cost.Credits
	for _, tt := range []struct{ service, model string }{{"generate/core", ""}, {"generate/sd3", "sd3.5-large"}, {"generate/sd3", "sd3.5-flash"}} {
		price, err := sheet.ServicePrice(tt.service, tt.model)
		if err != nil || price == 0 {
			t.Fatalf("default sheet: %s %s = %v, %v", tt.service, tt.model, price, err)
		}
		want += price
		fields := []formField{fv("prompt", "x")}
		if tt.model != "sd3.5-large" && tt.model != "" {
			fields = append(fields, fv("model", tt.model))
		}
		if rec := serve(s, stablePost(t, tt.service, fields, "")); rec.Code != 200 {
			t.Fatalf("%s: status %d: %s", tt.service, rec.Code, rec.Body)
		}
	}
	if got := s.Stats().Charged; got != want {
		t.Errorf("charged %v, want %v", got, want)
	}
}

func TestStableFailDropLatency(t *testing.T) {
	req := func() *http.Request { return stablePost(t, "generate/core", []formField{fv("prompt", "a cat")}, "") }
	s := newServer(t, Config{Pricer: flat(cost.Credit), FailRate: 1})
	rec := serve(s, req())
	if e := stableErrorOf(t, rec); rec.Code != 500 || e.Name != "internal_error" {
		t.Errorf("FailRate 1: %d %s, want 500 internal_error", rec.Code, e.Name)
	}
	if st := s.Stats(); st.Balance != DefaultBalance || st.Failed != 1 {
		t.Errorf("Stats = %+v, want the failure counted and not charged", st)
	}

	s = newServer(t, Config{Pricer: flat(cost.Credit), DropRate: 1})
	ts := httptest.NewServer(s)
	defer ts.Close()
	r := req()
	r.RequestURI = ""
	r.URL.Scheme, r.URL.Host = "http", strings.TrimPrefix(ts.URL, "http://")
	if resp, err := ts.Client().Do(r.WithContext(t.Context())); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request answered %s", resp.Status)
	}
	if st := s.Stats(); st.Dropped != 1 || st.Charged != cost.Credit {
		t.Errorf("Stats = %+v, want 1 dropped and charged", st)
	}

	var slept []time.Duration
	sleep := func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}
	s = newServer(t, Config{Pricer: free, Latency: Latency{Min: 2 * time.Second, Max: 2 * time.Second}, Sleep: sleep})
	serve(s, req())
	serve(s, stablePost(t, "generate/core", nil, "")) // invalid: answered without delay
	if len(slept) != 1 || slept[0] != 2*time.Second {
		t.Errorf("slept %v, want one 2s delay", slept)
	}
}

func TestRateLimitSharedWithV1(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := newServer(t, Config{RateLimit: 3, RateWindow: time.Second, Lockout: 5 * time.Second, Pricer: free, Now: func() time.Time { return now }})
	gen := func() *httptest.ResponseRecorder {
		return serve(s, stablePost(t, "generate/core", []formField{fv("prompt", "a cat")}, ""))
	}
	balance := func() *httptest.ResponseRecorder { return serve(s, request("GET", "/v1/user/balance", "", "")) }
	for i, call := range []func() *httptest.ResponseRecorder{balance, gen, balance} {
		if rec := call(); rec.Code != 200 {
			t.Fatalf("request %d: status %d", i, rec.Code)
		}
	}
	// An invalid request is answered before the limiter sees it.
	if rec := serve(s, stablePost(t, "generate/core", nil, "")); rec.Code != 400 {
		t.Fatalf("invalid request: status %d, want 400", rec.Code)
	}
	rec := gen()
	e := stableErrorOf(t, rec)
	want := []string{"You have exceeded the rate limit of 3 requests within a 1 second period, and have been timed out for 5 seconds."}
	if rec.Code != 429 || e.Name != "rate_limit_exceeded" || !slices.Equal(e.Errors, want) {
		t.Errorf("4th request in the window = %d %s %q, want 429 rate_limit_exceeded %q", rec.Code, e.Name, e.Errors, want)
	}
	now = now.Add(2 * time.Second) // the window is over, the lock-out is not
	if rec := balance(); rec.Code != 429 || errorOf(t, rec).Name != "rate_limit_exceeded" {
		t.Errorf("v1 during the lock-out: %d, want 429", rec.Code)
	}
	now = now.Add(3 * time.Second)
	if rec := gen(); rec.Code != 200 {
		t.Errorf("after the lock-out: %d, want 200", rec.Code)
	}
}

func TestStableNotFound(t *testing.T) {
	s := newServer(t, Config{})
	rec := serve(s, stablePost(t, "edit/unblur", []formField{file("image", inputPNG(64, 64))}, ""))
	if e := stableErrorOf(t, rec); rec.Code != 404 || e.Name != "not_found" {
		t.Errorf("a service not in the catalogue: %d %+v, want 404 not_found", rec.Code, e)
	}
}

func TestNewRefusesUnknownDerivedField(t *testing.T) {
	s := newServer(t, Config{})
	op := &catalog.Operation{Service: "generate/test", Fields: []catalog.Field{{Name: "flavour", Type: catalog.Enum, Enum: []string{"a"}, Derived: true}}}
	if _, err := s.stableImage(op); err == nil {
		t.Error("stableImage with an underivable field: nil error")
	}
}
