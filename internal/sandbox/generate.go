package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/engine"
)

// maxBody is the largest text-to-image body the sandbox reads (bytes).
const maxBody = 1 << 20

// textPrompt and textToImageBody mirror TextToImageRequestBody; pointers
// tell an absent field from a zero one.
type textPrompt struct {
	Text   *string  `json:"text"`
	Weight *float64 `json:"weight"`
}

type textToImageBody struct {
	TextPrompts        []textPrompt    `json:"text_prompts"`
	Width              *int64          `json:"width"`
	Height             *int64          `json:"height"`
	CfgScale           *float64        `json:"cfg_scale"`
	ClipGuidancePreset *string         `json:"clip_guidance_preset"`
	Sampler            *string         `json:"sampler"`
	Samples            *int64          `json:"samples"`
	Seed               *int64          `json:"seed"`
	Steps              *int64          `json:"steps"`
	StylePreset        *string         `json:"style_preset"`
	Extras             json.RawMessage `json:"extras"`
}

// generation is a validated text-to-image request.
type generation struct {
	engine        string
	prompt        string // every prompt's text, one per line: what the picture derives from
	width, height int
	steps         int
	samples       int
	seed          uint32 // 0 = random
	png           bool   // Accept: image/png
	filtered      bool
}

// artifact is one element of the JSON answer's artifacts.
type artifact struct {
	Base64       string `json:"base64"`
	FinishReason string `json:"finishReason"`
	Seed         uint32 `json:"seed"`
}

type artifactsBody struct {
	Artifacts []artifact `json:"artifacts"`
}

// ticket is what the sandbox decided, under its lock, about one paid request.
type ticket struct {
	charge  cost.Credits
	latency time.Duration
	fail    bool
	drop    bool
	seeds   []uint32
}

func (s *Server) textToImage(w http.ResponseWriter, r *http.Request) {
	g, aerr := s.parseGeneration(w, r)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	price, err := s.cfg.Pricer.ImagePrice(g.engine, g.width, g.height, g.steps)
	if err != nil {
		s.fail(w, r, errorf(http.StatusInternalServerError, nameServerError, "the sandbox cannot price this request: %v", err))
		return
	}
	t, ok := s.work(w, r, price*cost.Credits(g.samples), g.samples, g.seed, math.MaxUint32,
		errorf(http.StatusInternalServerError, nameServerError, "An unexpected server error occurred, please try again."))
	if !ok {
		return
	}

	reason := "SUCCESS"
	if g.filtered {
		reason = "CONTENT_FILTERED"
	}
	images := make([][]byte, len(t.seeds))
	for i, seed := range t.seeds {
		images[i] = renderPNG(newPicture(g.prompt, seed, g.width, g.height, g.filtered))
	}
	s.mu.Lock()
	s.stats.Generations++
	s.stats.Images += len(images)
	if g.filtered {
		s.stats.Filtered += len(images)
	}
	s.mu.Unlock()
	s.log(r, http.StatusOK, "images", len(images), "finish_reason", reason)

	if g.png {
		h := w.Header()
		h.Set("Content-Type", "image/png")
		h.Set("Content-Length", strconv.Itoa(len(images[0])))
		h.Set("Finish-Reason", reason)
		h.Set("Seed", strconv.FormatUint(uint64(t.seeds[0]), 10))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(images[0])
		return
	}
	body := artifactsBody{Artifacts: make([]artifact, len(images))}
	for i, img := range images {
		body.Artifacts[i] = artifact{Base64: base64.StdEncoding.EncodeToString(img), FinishReason: reason, Seed: t.seeds[i]}
	}
	writeJSON(w, http.StatusOK, body)
}

// reserve takes charge from the balance and draws the fate of a request for
// n images (latency, failure, drop, random seeds) in one step, so that
// concurrent requests can never overdraw the balance. Image i gets seed+i
// (wrapping like the API's uint32), or with seed 0 a random seed from 1 to
// maxSeed.
// work reserves charge for a request of n images, waits out its latency
// and plays its injected failure (answered as failure, refunded) or dropped
// connection (charged). It reports whether the request goes on to be
// answered; when it does not, the answer or refund is done.
func (s *Server) work(w http.ResponseWriter, r *http.Request, charge cost.Credits, n int, seed, maxSeed uint32, failure *apiError) (ticket, bool) {
	t, aerr := s.reserve(charge, n, seed, maxSeed)
	if aerr != nil {
		s.fail(w, r, aerr)
		return t, false
	}
	if err := s.cfg.Sleep(r.Context(), t.latency); err != nil {
		s.refund(t.charge) // the client left before any work was done
		return t, false
	}
	switch {
	case t.fail:
		s.refund(t.charge)
		s.fail(w, r, failure)
		return t, false
	case t.drop:
		s.mu.Lock()
		s.stats.Dropped++
		s.mu.Unlock()
		s.log(r, 0, "dropped", true)
		drop(w)
		return t, false
	}
	return t, true
}

func (s *Server) reserve(charge cost.Credits, n int, seed, maxSeed uint32) (ticket, *apiError) {
	t := ticket{charge: charge, seeds: make([]uint32, n)}

	s.mu.Lock()
	defer s.mu.Unlock()
	if t.charge > s.stats.Balance {
		return ticket{}, errorf(http.StatusPaymentRequired, nameInsufficientBalance,
			"Your organization does not have enough balance to request this action: it costs %s credits and the balance is %s credits.",
			t.charge, s.stats.Balance)
	}
	s.stats.Balance -= t.charge
	s.stats.Charged += t.charge
	t.latency = s.cfg.Latency.draw(s.rng)
	t.fail = s.rng.Float64() < s.cfg.FailRate
	t.drop = s.rng.Float64() < s.cfg.DropRate
	for i := range t.seeds {
		if seed == 0 {
			t.seeds[i] = 1 + s.rng.Uint32N(maxSeed)
		} else {
			t.seeds[i] = seed + uint32(i)
		}
	}
	return t, nil
}

func (s *Server) refund(c cost.Credits) {
	s.mu.Lock()
	s.stats.Balance += c
	s.stats.Charged -= c
	s.mu.Unlock()
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// HTTP/2, or a writer that cannot be hijacked: abort the response,
	// which resets the stream or closes the connection.
	panic(http.ErrAbortHandler)
}

// parseGeneration reads and validates a text-to-image request.
func (s *Server) parseGeneration(w http.ResponseWriter, r *http.Request) (generation, *apiError) {
	id := r.PathValue("engine_id")
	e, ok := engine.Lookup(id)
	if !ok {
		return generation{}, errorf(http.StatusNotFound, nameNotFound, "The specified engine (ID %s) was not found.", id)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return generation{}, badRequest("content-type: must be application/json")
	}
	wantPNG, aerr := acceptsPNG(r.Header.Get("Accept"))
	if aerr != nil {
		return generation{}, aerr
	}
	var body textToImageBody
	if aerr := decodeStrict(http.MaxBytesReader(w, r.Body, maxBody), &body); aerr != nil {
		return generation{}, aerr
	}
	g, aerr := s.validate(e, body)
	if aerr != nil {
		return generation{}, aerr
	}
	if wantPNG && g.samples > 1 {
		return generation{}, errorf(http.StatusBadRequest, nameInvalidSamples, "samples: must be 1 when Accept is image/png, got %d", g.samples)
	}
	g.png = wantPNG
	return g, nil
}

// acceptsPNG reads the Accept header: image/png, or application/json (the
// default when it is absent or */*).
func acceptsPNG(accept string) (bool, *apiError) {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "image/png":
			return true, nil
		case "application/json", "*/*", "application/*":
			return false, nil
		}
	}
	if strings.TrimSpace(accept) == "" {
		return false, nil
	}
	return false, badRequest("accept: must be application/json or image/png")
}

// decodeStrict decodes exactly one JSON object, rejecting unknown fields.
func decodeStrict(r io.Reader, v any) *apiError {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var maxErr *http.MaxBytesError
		switch {
		case errors.As(err, &maxErr):
			return badRequest("body: larger than %d bytes", maxErr.Limit)
		case errors.As(err, &typeErr):
			return badRequest("%s: must be of type %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
		case errors.Is(err, io.EOF):
			return badRequest("body: is required")
		}
		return badRequest("body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("body: unexpected data after the JSON object")
	}
	return nil
}

// validate applies the v1 spec's rules (TextToImageRequestBody in
// internal/prismtest/stability-v1-openapi-2025-02.json) and the engine's own.
func (s *Server) validate(e engine.Engine, b textToImageBody) (generation, *apiError) {
	g := generation{engine: e.ID, width: e.DefaultSize[0], height: e.DefaultSize[1], steps: e.DefaultSteps, samples: 1}
	if len(b.TextPrompts) == 0 {
		return g, badRequest("text_prompts: must contain at least one prompt")
	}
	texts := make([]string, len(b.TextPrompts))
	for i, p := range b.TextPrompts {
		switch {
		case p.Text == nil:
			return g, badRequest("text_prompts[%d].text: is required", i)
		case strings.TrimSpace(*p.Text) == "":
			return g, badRequest("text_prompts[%d].text: must not be empty", i)
		case utf8.RuneCountInString(*p.Text) > 2000:
			return g, badRequest("text_prompts[%d].text: must be at most 2000 characters", i)
		}
		texts[i] = *p.Text
		if contains(*p.Text, s.filter) {
			g.filtered = true
		}
	}
	g.prompt = strings.Join(texts, "\n")

	if b.Width != nil {
		g.width = int(max(min(*b.Width, math.MaxInt32), math.MinInt32))
	}
	if b.Height != nil {
		g.height = int(max(min(*b.Height, math.MaxInt32), math.MinInt32))
	}
	if err := e.CheckSize(g.width, g.height); err != nil {
		var se *engine.SizeError
		if errors.As(err, &se) {
			return g, errorf(http.StatusBadRequest, se.Name, "%s", se.Message)
		}
		return g, badRequest("%v", err)
	}
	if b.Steps != nil {
		g.steps = int(max(min(*b.Steps, math.MaxInt32), math.MinInt32))
	}
	if err := e.CheckSteps(g.steps); err != nil {
		return g, badRequest("steps: %v", err)
	}
	if b.CfgScale != nil && (*b.CfgScale < 0 || *b.CfgScale > 35) {
		return g, badRequest("cfg_scale: must be from 0 to 35, got %v", *b.CfgScale)
	}
	if b.Samples != nil {
		if *b.Samples < 1 || *b.Samples > 10 {
			return g, errorf(http.StatusBadRequest, nameInvalidSamples, "samples: must be from 1 to 10, got %d", *b.Samples)
		}
		g.samples = int(*b.Samples)
	}
	if b.Seed != nil {
		if *b.Seed < 0 || *b.Seed > math.MaxUint32 {
			return g, badRequest("seed: must be from 0 to 4294967295, got %d", *b.Seed)
		}
		g.seed = uint32(*b.Seed)
	}
	for _, f := range []struct {
		name  string
		value *string
		enum  []string
	}{
		{"sampler", b.Sampler, engine.Samplers()},
		{"style_preset", b.StylePreset, engine.StylePresets()},
		{"clip_guidance_preset", b.ClipGuidancePreset, engine.ClipGuidancePresets()},
	} {
		if f.value != nil && !slices.Contains(f.enum, *f.value) {
			return g, badRequest("%s: must be one of %s, got %q", f.name, strings.Join(f.enum, ", "), *f.value)
		}
	}
	if len(b.Extras) > 0 && b.Extras[0] != '{' && string(b.Extras) != "null" {
		return g, badRequest("extras: must be an object")
	}
	return g, nil
}
