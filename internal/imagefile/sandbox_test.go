package imagefile_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/imagefile"
	"github.com/batch-tool/batch/internal/sandbox"
)

// TestVerifyAcceptsSandboxImages checks Verify against the images the
// sandbox's own encoders make, in every format and at sizes that end
// blocks and rows oddly.
func TestVerifyAcceptsSandboxImages(t *testing.T) {
	s, err := sandbox.New(sandbox.Config{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(req *http.Request) []byte {
		t.Helper()
		req.Header.Set("Authorization", "Bearer sk-verify")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", req.Method, req.URL.Path, rec.Code, rec.Body)
		}
		return rec.Body.Bytes()
	}
	for _, size := range [][2]int{{1024, 1024}, {1152, 896}, {640, 1536}} {
		body := `{"text_prompts":[{"text":"a lighthouse"}],"width":` + strconv.Itoa(size[0]) + `,"height":` + strconv.Itoa(size[1]) + `}`
		req := httptest.NewRequest("POST", "/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "image/png")
		info, err := imagefile.Verify(bytes.NewReader(serve(req)))
		if want := (imagefile.Info{Format: imagefile.PNG, Width: size[0], Height: size[1]}); err != nil || info != want {
			t.Errorf("v1 %dx%d: Verify = %+v, %v; want %+v", size[0], size[1], info, err, want)
		}
	}
	for _, format := range []string{"png", "jpeg", "webp"} {
		for _, aspect := range []string{"1:1", "21:9", "9:16"} {
			var b bytes.Buffer
			mw := multipart.NewWriter(&b)
			mw.WriteField("prompt", "a lighthouse")
			mw.WriteField("output_format", format)
			mw.WriteField("aspect_ratio", aspect)
			mw.Close()
			req := httptest.NewRequest("POST", "/v2beta/stable-image/generate/core", &b)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			req.Header.Set("Accept", "image/*")
			info, err := imagefile.Verify(bytes.NewReader(serve(req)))
			if err != nil || string(info.Format) != format {
				t.Errorf("core %s %s: Verify = %+v, %v", format, aspect, info, err)
			}
		}
	}
}
