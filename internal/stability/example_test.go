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
