package sandbox

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/jpeg"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/catalog"
)

// maxStableSeed is the largest Stable Image seed (the 2026-09 spec's Seed
// schema); a random seed is drawn from 1 to it.
const maxStableSeed = 4294967294

// served reports whether the sandbox serves a catalogue operation: the
// synchronous ones that need no image input, which are the three generate
// services. Nothing else in the handler is particular to them: an image
// input (Ultra's and SD 3.5's optional image) is read as a file part and
// checked like any field, and every output size rule is implemented, so the
// synchronous edit, control and upscale services need only this filter
// widened; the two async ones also need GET /v2beta/results/{id}.
func served(op *catalog.Operation) bool {
	if op.Async {
		return false
	}
	for _, f := range op.Fields {
		if f.Type == catalog.Image && f.Required {
			return false
		}
	}
	return true
}

// stableJSON is the JSON answer of a Stable Image generation (the spec's
// ImageJSONResponse).
type stableJSON struct {
	Image        string `json:"image"` // base64
	FinishReason string `json:"finish_reason"`
	Seed         uint32 `json:"seed"`
}

// stableImage returns the handler of one Stable Image operation: validate
// the form against the catalogue row, then authenticate and rate-limit,
// moderate, charge the service's price, and answer with an image of the
// catalogue's output size in the format asked for.
func (s *Server) stableImage(op *catalog.Operation) (http.HandlerFunc, error) {
	for _, f := range op.Fields {
		if !f.Derived {
			continue
		}
		if _, _, ok := derive(f.Name, &stableRequest{op: op}); !ok {
			return nil, fmt.Errorf("derived field %q has no rule in the sandbox", f.Name)
		}
	}
	return func(w http.ResponseWriter, r *http.Request) {
		q, aerr := readStableRequest(w, r, op)
		if aerr == nil {
			aerr = s.authorize(w, r)
		}
		if aerr == nil && contains(strings.Join(q.texts(), "\n"), s.moderate) {
			aerr = errorf(http.StatusForbidden, nameContentModeration,
				"Your request was flagged by our content moderation system, as a result your request was denied and you were not charged.")
		}
		if aerr != nil {
			s.fail(w, r, aerr)
			return
		}
		s.generateStable(w, r, q)
	}, nil
}

// generateStable charges and answers a valid, authorized Stable Image
// request.
func (s *Server) generateStable(w http.ResponseWriter, r *http.Request, q *stableRequest) {
	price, err := s.cfg.Pricer.ServicePrice(q.op.Service, q.model())
	if err != nil {
		s.fail(w, r, errorf(http.StatusInternalServerError, nameInternalError, "the sandbox cannot price this request: %v", err))
		return
	}
	t, aerr := s.reserve(price, 1, q.seed(), maxStableSeed)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	if err := s.cfg.Sleep(r.Context(), t.latency); err != nil {
		s.refund(t.charge) // the client left before any work was done
		return
	}
	switch {
	case t.fail:
		s.refund(t.charge)
		s.fail(w, r, errorf(http.StatusInternalServerError, nameInternalError, "An unexpected server error has occurred, please try again later."))
		return
	case t.drop:
		s.mu.Lock()
		s.stats.Dropped++
		s.mu.Unlock()
		s.log(r, 0, "dropped", true)
		drop(w)
		return
	}

	filtered := contains(strings.Join(q.texts(), "\n"), s.filter)
	width, height := outputSize(q)
	seed := t.seeds[0]
	data, err := encodeImage(newPicture(q.key(), seed, width, height, filtered), q.format())
	if err != nil {
		s.refund(t.charge)
		s.fail(w, r, errorf(http.StatusInternalServerError, nameInternalError, "the sandbox cannot encode the image: %v", err))
		return
	}
	reason := "SUCCESS"
	if filtered {
		reason = "CONTENT_FILTERED"
	}
	s.mu.Lock()
	s.stats.Generations++
	s.stats.Images++
	if filtered {
		s.stats.Filtered++
	}
	id := s.newHexID()
	s.mu.Unlock()
	s.log(r, http.StatusOK, "service", q.op.Service, "finish_reason", reason)

	h := w.Header()
	h.Set("X-Request-Id", id)
	mediaType := "image/" + q.format()
	if q.json {
		// The finish-reason and seed headers are absent on JSON answers
		// (the spec's ImageFinishReason and Seed headers). The spec writes
		// this type as application/json; type=image/png, but a parameter
		// value with a slash must be quoted (RFC 9110 §5.6.6), and
		// parsers, Prism's among them, refuse it unquoted.
		contentType := mime.FormatMediaType("application/json", map[string]string{"type": mediaType})
		writeJSONType(w, http.StatusOK, contentType, stableJSON{
			Image: base64.StdEncoding.EncodeToString(data), FinishReason: reason, Seed: seed,
		})
		return
	}
	h.Set("Content-Type", mediaType)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	h.Set("Finish-Reason", reason)
	h.Set("Seed", strconv.FormatUint(uint64(seed), 10))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// outputSize returns the width and height of the request's output, in
// pixels, by the operation's size rule.
func outputSize(q *stableRequest) (width, height int) {
	out := q.op.Output
	scale := out.Scale
	if scale == 0 {
		scale = 1
	}
	name, in := q.input()
	switch out.Rule {
	case catalog.ByAspect:
		ratio := q.value("aspect_ratio")
		if name != "" && q.excludes(name, "aspect_ratio") {
			// The output takes the input's aspect ratio (Ultra and SD 3.5
			// image-to-image: a 1536×1536 input gave 1024×1024 live).
			ratio = nearestRatio(in)
		}
		w, h, _ := catalog.AspectSize(ratio, out.Scale)
		return w, h
	case catalog.SameAsInput:
		return in.X, in.Y
	case catalog.ScaledInput:
		return int(float64(in.X) * scale), int(float64(in.Y) * scale)
	case catalog.InputPlusMargins:
		margin := func(name string) int { n, _ := strconv.Atoi(q.value(name)); return n }
		return in.X + margin("left") + margin("right"), in.Y + margin("up") + margin("down")
	case catalog.UpscaleToArea:
		w := math.Round(math.Sqrt(float64(out.Area) * float64(in.X) / float64(in.Y)))
		return int(w), int(math.Round(w * float64(in.Y) / float64(in.X)))
	}
	return 0, 0
}

// input returns the first image input sent, in catalogue order, and its
// size; name is "" when there is none.
func (q *stableRequest) input() (name string, size image.Point) {
	for _, f := range q.op.Fields {
		if in, ok := q.inputs[f.Name]; ok {
			return f.Name, in
		}
	}
	return "", image.Point{}
}

// excludes reports whether the operation refuses field together with the
// field named by when.
func (q *stableRequest) excludes(when, field string) bool {
	return slices.ContainsFunc(q.op.Rules, func(r catalog.Rule) bool {
		return r.Kind == catalog.Excludes && r.If == when && slices.Contains(r.Fields, field)
	})
}

// nearestRatio returns the aspect ratio, of the nine, closest to size's.
func nearestRatio(size image.Point) string {
	best, bestDist := "1:1", math.Inf(1)
	want := math.Log(float64(size.X) / float64(size.Y))
	for _, ratio := range catalog.AspectRatios() {
		w, h, _ := catalog.AspectSize(ratio, 1)
		if d := math.Abs(math.Log(float64(w)/float64(h)) - want); d < bestDist {
			best, bestDist = ratio, d
		}
	}
	return best
}

// encodeImage renders the picture in an output_format: png and webp with
// the sandbox's own encoders, jpeg with the standard library's.
func encodeImage(p picture, format string) ([]byte, error) {
	switch format {
	case "png":
		return renderPNG(p), nil
	case "webp":
		return renderWebP(p), nil
	case "jpeg":
		var b bytes.Buffer
		if err := jpeg.Encode(&b, p.rgba(), &jpeg.Options{Quality: 90}); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	return nil, fmt.Errorf("unknown output format %q", format)
}
