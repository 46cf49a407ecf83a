package prismtest

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"os"
	"slices"
	"testing"
	"unicode/utf8"
)

func TestSafeMultipart(t *testing.T) {
	image := make([]byte, 4096) // every byte value, and CR LF pairs
	for i := range image {
		image[i] = byte(i * 7)
	}
	image = append(image, "\r\n--\r\n=\r\n"...)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	w, err := mw.CreateFormFile("image", "in.png")
	must(err)
	_, err = w.Write(image)
	must(err)
	must(mw.WriteField("prompt", "a café, 10 € — naïve"))
	must(mw.Close())

	safe, err := SafeMultipart(body.Bytes(), mw.Boundary())
	must(err)
	// What Prism does to a body: decode it as UTF-8 and encode it again.
	if through := []byte(string([]rune(string(safe)))); !bytes.Equal(through, safe) {
		t.Error("the safe body does not survive a UTF-8 round trip")
	}
	if !utf8.Valid(safe) {
		t.Error("the safe body is not valid UTF-8")
	}
	mr := multipart.NewReader(bytes.NewReader(safe), mw.Boundary())
	var got [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		must(err)
		data, err := io.ReadAll(p)
		must(err)
		got = append(got, data)
	}
	if len(got) != 2 || !bytes.Equal(got[0], image) || string(got[1]) != "a café, 10 € — naïve" {
		t.Errorf("decoded %d parts; image equal %v; prompt %q", len(got), len(got) > 0 && bytes.Equal(got[0], image), got[1:])
	}
	// The original body does not survive what Prism does.
	if through := []byte(string([]rune(string(body.Bytes())))); bytes.Equal(through, body.Bytes()) {
		t.Error("the original body survives a UTF-8 round trip; the test image is too tame")
	}
}

func TestStableImageFixes(t *testing.T) {
	data, err := os.ReadFile(StableImageSpec())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, f := range StableImageFixes() {
		if err := f.Apply(doc); err != nil {
			t.Errorf("%s: %v", f.Name, err)
		}
		if err := f.Apply(doc); err == nil {
			t.Errorf("%s applied twice: nil error", f.Name)
		}
	}
	sd3, _ := lookup(doc, "paths", "/v2beta/stable-image/generate/sd3", "post", "requestBody", "content", "multipart/form-data", "schema", "properties", "model")
	erase, _ := lookup(doc, "paths", "/v2beta/stable-image/edit/erase", "post", "requestBody", "content", "multipart/form-data", "schema")
	if enum, _ := sd3["enum"].([]any); !slices.Contains(enum, any("sd3.5-flash")) {
		t.Errorf("sd3 model enum after the fix = %v", enum)
	}
	if req, _ := erase["required"].([]any); !slices.Equal(req, []any{"image"}) {
		t.Errorf("erase required after the fix = %v, want [image]", req)
	}
}
