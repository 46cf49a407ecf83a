package stability_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/batch-tool/batch/internal/stability"
)

// pngSink keeps the images in memory; a real sink writes temp files.
type pngSink struct{ images []bytes.Buffer }

func (s *pngSink) Begin(i int) (io.Writer, error) {
	s.images = append(s.images, bytes.Buffer{})
	return &s.images[i], nil
}

func (s *pngSink) End(i int, a stability.Artifact) error {
	fmt.Printf("image %d: %d bytes, seed %d, %s\n", i, s.images[i].Len(), a.Seed, a.FinishReason)
	return nil
}

func ExampleClient_TextToImage() {
	// A stand-in for the API, answering every request with a 4-byte image.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Seed", "42")
		w.Header().Set("Finish-Reason", "SUCCESS")
		w.Write([]byte("\x89PNG"))
	}))
	defer srv.Close()

	c, err := stability.NewClient(stability.Options{BaseURL: srv.URL, APIKey: "sk-example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	req := stability.TextToImageRequest{
		TextPrompts: []stability.TextPrompt{{Text: "a lighthouse at dusk", Weight: 1}},
		Width:       1024,
		Height:      1024,
		Steps:       30,
	}
	arts, err := c.TextToImage(context.Background(), "stable-diffusion-xl-1024-v1-0", req, &pngSink{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(arts), "artifact")
	// Output:
	// image 0: 4 bytes, seed 42, SUCCESS
	// 1 artifact
}

func ExampleNewClient_plainHTTP() {
	_, err := stability.NewClient(stability.Options{BaseURL: "http://api.stability.ai"})
	fmt.Println(err)
	// Output:
	// base URL uses plain http to api.stability.ai: the API key would travel unencrypted; use https, or http only to localhost, 127.0.0.0/8 or ::1
}

func ExampleClient_StableImage() {
	// A stand-in for the API: it reads the form and answers with a 16-byte
	// "PNG" (its signature and a little more).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Printf("%s %s: prompt %q, aspect_ratio %s\n", r.Method, r.URL.Path, r.FormValue("prompt"), r.FormValue("aspect_ratio"))
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Seed", "42")
		w.Header().Set("Finish-Reason", "SUCCESS")
		w.Header().Set("X-Request-Id", "5f1e9c")
		w.Write([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
	}))
	defer srv.Close()

	c, err := stability.NewClient(stability.Options{BaseURL: srv.URL, APIKey: "sk-example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fields := []stability.Field{
		{Name: "prompt", Value: "a lighthouse at dusk"},
		{Name: "aspect_ratio", Value: "16:9"},
		{Name: "output_format", Value: "png"},
	}
	arts, err := c.StableImage(context.Background(), "generate/core", fields, &pngSink{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("format %s, request id %s\n", arts[0].Format, arts[0].RequestID)
	// Output:
	// POST /v2beta/stable-image/generate/core: prompt "a lighthouse at dusk", aspect_ratio 16:9
	// image 0: 16 bytes, seed 42, SUCCESS
	// format png, request id 5f1e9c
}
