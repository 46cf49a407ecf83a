package sandbox

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/jpeg"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/catalog"
)

// maxStableSeed is the largest Stable Image seed (the 2026-09 spec's Seed
// schema); a random seed is drawn from 1 to it.
const maxStableSeed = 4294967294

// stableJSON is the JSON answer of a Stable Image generation (the spec's
// ImageJSONResponse).
type stableJSON struct {
	Image        string `json:"image"` // base64
	FinishReason string `json:"finish_reason"`
	Seed         uint32 `json:"seed"`
}

// stableImage returns the handler of one Stable Image operation: validate
// the form against the catalogue row, then authenticate and rate-limit,
// moderate and charge the service's price; a synchronous service answers
// with an image of the catalogue's output size in the format asked for, an
// async one with the id of a generation that completes later (async.go).
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
		var key string
		if aerr == nil {
			key, aerr = s.authorize(w, r)
		}
		if aerr == nil && contains(strings.Join(q.texts(), "\n"), s.moderate) {
			aerr = errorf(http.StatusForbidden, nameContentModeration,
				"Your request was flagged by our content moderation system, as a result your request was denied and you were not charged.")
		}
		if aerr != nil {
			s.fail(w, r, aerr)
			return
		}
		res, t, ok := s.generateStable(w, r, q)
		if !ok {
			return
		}
		if op.Async {
			s.submit(w, r, key, res)
			return
		}
		s.deliver(w, r, res, q.json, &t)
	}, nil
}

// result is the outcome of a Stable Image generation: everything its image
// is drawn from. It is small, so an async generation keeps it rather than
// the image, and draws the image when it is fetched.
type result struct {
	service  string
	key      string // what the picture derives from besides the seed (stableRequest.key)
	seed     uint32
	size     catalog.Size
	format   string // the output_format
	filtered bool   // CONTENT_FILTERED: a blurred picture
}

// reason is the result's finish reason.
func (res *result) reason() string {
	if res.filtered {
		return "CONTENT_FILTERED"
	}
	return "SUCCESS"
}

// generateStable charges a valid, authorized, unmoderated Stable Image
// request and plays out the injected latency, failure and drop; it returns
// the result and ok, or answers (or drops) the request itself and returns
// !ok. The price is charged here, once, for sync and async services alike.
func (s *Server) generateStable(w http.ResponseWriter, r *http.Request, q *stableRequest) (result, ticket, bool) {
	price, err := s.cfg.Pricer.ServicePrice(q.op.Service, q.model())
	if err != nil {
		s.fail(w, r, errorf(http.StatusInternalServerError, nameInternalError, "the sandbox cannot price this request: %v", err))
		return result{}, ticket{}, false
	}
	in := q.inputs[q.op.Input()]
	size, ok := q.op.OutputSize(q.get, in.size)
	if !ok {
		// Validation makes the main input required and readable, so
		// this is the sandbox's own mistake.
		s.fail(w, r, errorf(http.StatusInternalServerError, nameInternalError, "the sandbox cannot size the output of %s", q.op.Service))
		return result{}, ticket{}, false
	}
	t, ok := s.work(w, r, price, 1, q.seed(), maxStableSeed,
		errorf(http.StatusInternalServerError, nameInternalError, "An unexpected server error has occurred, please try again later."))
	if !ok {
		return result{}, ticket{}, false
	}
	return result{
		service:  q.op.Service,
		key:      q.key(),
		seed:     t.seeds[0],
		size:     size,
		format:   q.format(),
		filtered: contains(strings.Join(q.texts(), "\n"), s.filter),
	}, t, true
}

// get returns what catalog.Operation.OutputSize reads of a field: its value
// as sent, a non-empty mark for an image input sent, "" for a field not
// sent.
func (q *stableRequest) get(name string) string {
	if v, ok := q.values[name]; ok {
		return v
	}
	if q.set(name) {
		return "(file)"
	}
	return ""
}

// deliver answers with the result's image: its bytes, or with asJSON the
// spec's {image, finish_reason, seed}. paid is the ticket of a synchronous
// generation, whose answer this is: it counts as a generation, and its
// charge is refunded if the image cannot be drawn. It is nil for an async
// result fetched by a poll, whose submit was the paid and counted request.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, res result, asJSON bool, paid *ticket) {
	data, err := encodeImage(newPicture(res.key, res.seed, res.size.W, res.size.H, res.filtered), res.format)
	if err != nil {
		if paid != nil {
			s.refund(paid.charge)
		}
		s.fail(w, r, errorf(http.StatusInternalServerError, nameInternalError, "the sandbox cannot encode the image: %v", err))
		return
	}
	s.mu.Lock()
	if paid != nil {
		s.stats.Generations++
	}
	s.stats.Images++
	if res.filtered {
		s.stats.Filtered++
	}
	id := s.newHexID()
	s.mu.Unlock()
	s.log(r, http.StatusOK, "service", res.service, "finish_reason", res.reason())

	h := w.Header()
	h.Set("X-Request-Id", id)
	mediaType := "image/" + res.format
	if asJSON {
		// The finish-reason and seed headers are absent on JSON answers
		// (the spec's ImageFinishReason and Seed headers). The spec writes
		// this type as application/json; type=image/png, but a parameter
		// value with a slash must be quoted (RFC 9110 §5.6.6), and
		// parsers, Prism's among them, refuse it unquoted.
		contentType := mime.FormatMediaType("application/json", map[string]string{"type": mediaType})
		writeJSONType(w, http.StatusOK, contentType, stableJSON{
			Image: base64.StdEncoding.EncodeToString(data), FinishReason: res.reason(), Seed: res.seed,
		})
		return
	}
	h.Set("Content-Type", mediaType)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	h.Set("Finish-Reason", res.reason())
	h.Set("Seed", strconv.FormatUint(uint64(res.seed), 10))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
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
