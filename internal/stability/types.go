// Package stability is a client for the Stability AI v1 REST API: text-to-image
// in both Accept modes, typed errors, account balance and engines.
package stability

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// TextPrompt is one entry of text_prompts. A negative Weight makes it a
// negative prompt.
type TextPrompt struct {
	Text   string  `json:"text"`
	Weight float64 `json:"weight"`
}

// TextToImageRequest is the JSON body of POST /v1/generation/{engine}/text-to-image.
// Zero-valued optional fields are omitted, so the API applies its defaults.
type TextToImageRequest struct {
	TextPrompts        []TextPrompt `json:"text_prompts"`
	Width              int          `json:"width,omitempty"`  // pixels
	Height             int          `json:"height,omitempty"` // pixels
	CfgScale           *float64     `json:"cfg_scale,omitempty"`
	ClipGuidancePreset string       `json:"clip_guidance_preset,omitempty"`
	Sampler            string       `json:"sampler,omitempty"`
	Samples            int          `json:"samples,omitempty"` // 1–10
	Seed               uint32       `json:"seed"`              // 0 = random
	Steps              int          `json:"steps,omitempty"`
	StylePreset        string       `json:"style_preset,omitempty"`
}

// Finish reasons the API reports per artifact.
const (
	FinishSuccess         = "SUCCESS"
	FinishError           = "ERROR"
	FinishContentFiltered = "CONTENT_FILTERED"
)

// Artifact describes one generated image (its bytes went to a Sink).
type Artifact struct {
	Seed         uint32 // the seed the API used
	FinishReason string // SUCCESS, ERROR or CONTENT_FILTERED
	// RequestID is the answer's x-request-id header, what Stability support
	// asks for; "" when the server sent none.
	RequestID string
}

// Sink receives the images of one text-to-image attempt as they stream in.
// The client calls Begin(i) before the first byte of artifact i, writes the
// decoded PNG bytes to the returned writer, then calls End(i, a) once the
// artifact's metadata is known. Artifacts arrive in order 0, 1, 2, ... If the
// attempt fails, the client returns an error and the caller discards what the
// sink received.
type Sink interface {
	Begin(i int) (io.Writer, error)
	End(i int, a Artifact) error
}

// APIError is a non-2xx answer from the API, with the {id,name,message} body.
type APIError struct {
	Status     int           // HTTP status code
	ID         string        // the body's id; "" when absent
	Name       string        // the body's name, e.g. "invalid_sdxl_v1_dimensions"; "" when absent
	Message    string        // the body's message, at most 1 KiB
	RetryAfter time.Duration // from a Retry-After header; zero when the server sent none
}

func (e *APIError) Error() string {
	msg := e.Message
	if e.Name != "" {
		msg = e.Name + ": " + msg
	}
	return fmt.Sprintf("image API: %d %s: %s", e.Status, http.StatusText(e.Status), msg)
}
