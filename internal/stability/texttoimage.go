package stability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// TextToImage makes one POST /v1/generation/{engine}/text-to-image attempt
// and streams the images into sink; it never retries and never waits for a
// rate limit, the caller owns both.
//
// With req.Samples ≤ 1 it asks for image/png and writes the body to
// sink.Begin(0), taking the seed and finish reason from the Seed and
// Finish-Reason headers. Every artifact has Format "png" and the answer's
// X-Request-Id, when it is fit to keep (see Artifact.RequestID). With more
// samples it asks for application/json and decodes each artifact's base64
// on the fly, so neither an image nor the body is ever held in memory. It
// returns one Artifact per sample, in order. Each image is held to
// Options.MaxImageBytes.
//
// Errors, all wrapped with "text-to-image ENGINE":
//   - *APIError for a non-2xx answer (the server did no work);
//   - *TransportError when no answer came or the body broke off; Sent
//     reports whether the outcome is unknown; it wraps ctx.Err() when the
//     context ended;
//   - ErrMalformedResponse when a 2xx answer breaks the contract (wrong
//     artifact count, missing seed, unknown finish reason, bad JSON, an
//     image over the size cap);
//   - *FinishReasonError when an image finished with ERROR;
//   - the sink's own errors, wrapped.
//
// On any error the caller should discard what the sink received.
func (c *Client) TextToImage(ctx context.Context, engine string, req TextToImageRequest, sink Sink) ([]Artifact, error) {
	op := "text-to-image " + engine
	if engine == "" {
		return nil, fmt.Errorf("text-to-image: %w: engine is empty", ErrInvalidRequest)
	}
	if sink == nil {
		return nil, fmt.Errorf("%s: %w: sink is nil", op, ErrInvalidRequest)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%s: encode request: %w", op, err)
	}
	samples := max(req.Samples, 1)
	accept := "application/json"
	if samples == 1 {
		accept = "image/png"
	}
	path := "/v1/generation/" + url.PathEscape(engine) + "/text-to-image"
	resp, err := c.send(ctx, op, http.MethodPost, path, accept, jsonBody(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close() // read to its end on success, see getJSON
	rr := &recordingReader{r: resp.Body}
	answer, err := c.capAnswer(resp, rr, samples > 1, samples)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	sink = imageCap{Sink: sink, max: c.maxImage}
	var arts []Artifact
	if samples == 1 {
		arts, err = readPNG(resp.Header, answer, sink, c.red, c.bufs)
	} else {
		arts, err = readJSON(resp.Header, answer, samples, sink, c.red, c.bufs)
	}
	if err != nil {
		if rr.err != nil { // the connection failed, whatever the parser made of it
			return nil, fmt.Errorf("%s: %w", op, c.transportError(ctx, nil, true, rr.err))
		}
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return arts, nil
}

// readPNG streams an image/png answer into the sink; a finish reason of
// ERROR is a *FinishReasonError, before the sink sees anything.
func readPNG(h http.Header, body io.Reader, sink Sink, red *redactor, bufs *buffers) ([]Artifact, error) {
	if err := checkContentType(h, "image/png", red); err != nil {
		return nil, err
	}
	a := Artifact{Format: "png", RequestID: requestID(h, red)}
	var err error
	if a.Seed, err = seedHeader(h, true, red); err != nil {
		return nil, err
	}
	if a.FinishReason, err = finishHeader(h, red); err != nil {
		return nil, err
	}
	if a.FinishReason == FinishError {
		return nil, &FinishReasonError{RequestID: a.RequestID}
	}
	w, err := sink.Begin(0)
	if err != nil {
		return nil, fmt.Errorf("artifact 0: %w", err)
	}
	// A read error is the connection's: TextToImage reports it as such.
	if _, err := bufs.copyPooled(w, body); err != nil {
		return nil, fmt.Errorf("artifact 0: %w", err)
	}
	if err := sink.End(0, a); err != nil {
		return nil, fmt.Errorf("artifact 0: %w", err)
	}
	return []Artifact{a}, nil
}

// readJSON streams an application/json answer of samples artifacts into
// the sink.
func readJSON(h http.Header, body io.Reader, samples int, sink Sink, red *redactor, bufs *buffers) ([]Artifact, error) {
	if err := checkContentType(h, "application/json", red); err != nil {
		return nil, err
	}
	arts, err := scanArtifacts(body, samples, sink, requestID(h, red), red, bufs)
	if err != nil {
		return nil, err
	}
	if len(arts) != samples {
		return nil, malformed("%d artifacts, want %d", len(arts), samples)
	}
	return arts, nil
}

// checkContentType refuses a media type that contradicts the Accept mode,
// e.g. JSON where a PNG was asked for, which would otherwise be saved as an
// image. A missing or other type is left to the body checks, since servers
// that do not set one get a sniffed type such as text/plain.
func checkContentType(h http.Header, accept string, red *redactor) error {
	v := h.Get("Content-Type")
	if v == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(v)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) { // the API sends "application/json; type=image/png"
		return malformed("Content-Type %s, want %s", red.quote(v), accept)
	}
	isJSON := mt == "application/json" || strings.HasSuffix(mt, "+json")
	isImage := strings.HasPrefix(mt, "image/")
	if accept == "image/png" && (isJSON || mt == "text/html" || isImage && mt != accept) ||
		accept == "application/json" && isImage {
		return malformed("Content-Type %s, want %s", red.quote(v), accept)
	}
	return nil
}
