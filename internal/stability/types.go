// Package stability is a client for the Stability AI REST API: v1
// text-to-image in both Accept modes, account balance and engines, and the
// Stable Image (v2beta) services of package catalog, synchronous and
// asynchronous, as streamed multipart requests. Images stream from the
// answer into a Sink and inputs from disk into the request, so neither is
// ever held whole in memory. Errors are typed and sorted into classes by
// Classify. Every value from the server is scrubbed of the API key, and of
// any piece of it, before it is returned or quoted in an error.
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
	// Seed is the seed the API used; 0 when a Stable Image service that
	// takes no seed (upscale/fast, edit/remove-background) sent none.
	Seed         uint32
	FinishReason string // SUCCESS, ERROR or CONTENT_FILTERED
	// RequestID is the answer's x-request-id header, what Stability support
	// asks for: 1–128 characters of [A-Za-z0-9._:-]. It is "" when the
	// server sent none or sent another value, which is dropped rather than
	// failing an image that was paid for.
	RequestID string
	// Format is the image's format, "png", "jpeg" or "webp", as the answer
	// declared it and its first bytes confirmed; v1 images are always "png".
	Format string
}

// FinishReasonError reports an answer whose image finished with ERROR: the API
// says it failed to make the image, so the attempt fails and its bytes, if
// the sink got any, must be discarded, never kept as an image. Classify
// gives ClassOther: the server answered 2xx, so the work may be billed.
type FinishReasonError struct {
	// Artifact is the index of the image that finished with ERROR; 0 for
	// a Stable Image answer.
	Artifact int
	// RequestID is the answer's x-request-id, as in Artifact.RequestID;
	// "" when there was none fit to keep.
	RequestID string
}

func (e *FinishReasonError) Error() string {
	msg := fmt.Sprintf("artifact %d finished with ERROR: the API failed to generate the image", e.Artifact)
	if e.RequestID != "" {
		msg += " (request id " + e.RequestID + ")"
	}
	return msg
}

// Sink receives the images of one attempt as they stream in.
// The client calls Begin(i) before the first byte of artifact i, writes the
// decoded image bytes (PNG, JPEG or WebP: see Artifact.Format) to the
// returned writer, then calls End(i, a) once the artifact's metadata is
// known. Artifacts arrive in order 0, 1, 2, ...; a Stable Image answer has
// only artifact 0. If the attempt fails, the client returns an error and the
// caller discards what the sink received: also when an image grows past
// Options.MaxImageBytes (the write fails) or finishes with ERROR (End is
// not called).
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
	if e.Status == http.StatusRequestEntityTooLarge {
		// batch checks request sizes before sending, so this one slipped
		// past a check that is wrong.
		msg += " (the request was too large for the API: a validation bug in batch, please report it)"
	}
	return fmt.Sprintf("image API: %d %s: %s", e.Status, http.StatusText(e.Status), msg)
}
