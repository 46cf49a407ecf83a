package sandbox

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/imagefile"
)

// stableRequest is a Stable Image request whose form passed the
// catalogue's checks.
type stableRequest struct {
	op     *catalog.Operation
	sent   map[string]bool   // every field of the operation sent, valid or not
	values map[string]string // text fields as sent, by name
	inputs map[string]input  // each image input that is readable and within its limits, by name
	json   bool              // answer {image, finish_reason, seed} instead of raw bytes
}

// input is what the sandbox keeps of an image input: its size and a digest
// of its bytes, never the bytes themselves.
type input struct {
	size   catalog.Size
	digest [sha256.Size]byte
}

// value returns the field's value as sent, else the catalogue's default
// ("" when it has none).
func (q *stableRequest) value(name string) string {
	if v, ok := q.values[name]; ok {
		return v
	}
	if f, ok := q.op.Field(name); ok {
		return f.Default
	}
	return ""
}

// set reports whether the request carries the field, as text or as a file,
// valid or not: the combination rules see what was sent.
func (q *stableRequest) set(name string) bool { return q.sent[name] }

// sentImage reports whether the request carries an image input.
func (q *stableRequest) sentImage() bool { return slices.ContainsFunc(q.op.Images(), q.set) }

// format is the output_format asked for, or its default.
func (q *stableRequest) format() string { return q.value("output_format") }

// model is the value of the service's model field, or "" for a service
// without one: with the service, it is what the price sheet prices.
func (q *stableRequest) model() string {
	if _, ok := q.op.Field("model"); !ok {
		return ""
	}
	return q.value("model")
}

// texts returns the values of the text fields sent, in catalogue order:
// what the filter and moderation words are looked for in.
func (q *stableRequest) texts() []string {
	var out []string
	for _, f := range q.op.Fields {
		if v, ok := q.values[f.Name]; ok && f.Type == catalog.Text {
			out = append(out, v)
		}
	}
	return out
}

// key is what the picture derives from besides the seed: the service and
// every field sent but seed and output_format (so the same request in each
// format shows the same picture), image inputs by size and digest, in
// catalogue order.
func (q *stableRequest) key() string {
	var b strings.Builder
	b.WriteString(q.op.Service)
	for _, f := range q.op.Fields {
		if f.Name == "seed" || f.Name == "output_format" {
			continue
		}
		if v, ok := q.values[f.Name]; ok {
			fmt.Fprintf(&b, "\n%s=%s", f.Name, v)
		} else if in, ok := q.inputs[f.Name]; ok {
			fmt.Fprintf(&b, "\n%s=%dx%d:%x", f.Name, in.size.W, in.size.H, in.digest[:8])
		}
	}
	return b.String()
}

// seed is the seed field as a number; validation has checked its range.
func (q *stableRequest) seed() uint32 {
	n, _ := strconv.ParseUint(q.value("seed"), 10, 32)
	return uint32(n)
}

// readStableRequest reads and checks a Stable Image request against its
// catalogue row: headers, every form part, types, ranges, enums, required
// fields, derived fields, combination rules and each image input's format
// and dimensions. Every problem found goes into one 400 answer, as the live
// validator lists them all; a body over catalog.MaxBody is 413. Image
// inputs are streamed, never held whole. It reads nothing but the request,
// so it runs before authentication. An async service's submit takes no
// accept header (its answer is always JSON), so none is checked for it.
func readStableRequest(w http.ResponseWriter, r *http.Request, op *catalog.Operation) (*stableRequest, *apiError) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, badRequest("content-type: must be multipart/form-data with a boundary")
	}
	q := &stableRequest{op: op, sent: map[string]bool{}, values: map[string]string{}, inputs: map[string]input{}}
	var problems []string
	mr := multipart.NewReader(http.MaxBytesReader(w, r.Body, catalog.MaxBody), params["boundary"])
	for {
		// NextPart reads to the end of the part before, which add may
		// have left unread.
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, bodyError(err)
		}
		p, err := q.add(part)
		if err != nil {
			return nil, bodyError(err)
		}
		if p != "" {
			problems = append(problems, p)
		}
	}
	problems = append(problems, q.check()...)
	if !op.Async {
		asJSON, p := negotiate(r.Header.Get("Accept"), q.format())
		if p != "" {
			problems = append(problems, p)
		}
		q.json = asJSON
	}
	if len(problems) > 0 {
		return nil, &apiError{status: http.StatusBadRequest, name: nameBadRequest, messages: problems}
	}
	return q, nil
}

// bodyError is the answer to a body that could not be read: 413 past the
// size cap, else 400.
func bodyError(err error) *apiError {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return errorf(http.StatusRequestEntityTooLarge, namePayloadTooLarge, "body: payloads cannot be larger than 10MiB in size")
	}
	return badRequest("body: not a valid multipart/form-data body: %v", err)
}

// add records one form part. It returns a problem with the part ("" for
// none), or the error that reading the body gave.
func (q *stableRequest) add(part *multipart.Part) (problem string, err error) {
	name := part.FormName()
	f, ok := q.op.Field(name)
	switch {
	case name == "":
		return "body: every part needs a name", nil
	case !ok:
		return fmt.Sprintf("%s: is not a parameter of %s", name, q.op.Service), nil
	case q.set(name):
		return fmt.Sprintf("%s: must be sent once", name), nil
	}
	q.sent[name] = true
	switch {
	case f.Type == catalog.Image:
		in, p, err := readInput(part)
		if err != nil {
			return "", err
		}
		if p == "" {
			p = f.Limits.Check(in.size.W, in.size.H)
		}
		if p != "" {
			return name + ": " + p, nil
		}
		q.inputs[name] = in
	case part.FileName() != "":
		return fmt.Sprintf("%s: must be a text value, not a file", name), nil
	default:
		data, err := io.ReadAll(part)
		if err != nil {
			return "", err
		}
		q.values[name] = string(data)
	}
	return "", nil
}

// readInput reads an image input to its end: its format and size from its
// header (package imagefile), and a digest of all its bytes, so that the
// picture drawn follows the input while at most a header's worth of it is
// held. problem says what is wrong with the image ("" when nothing is); err
// is an error reading the body.
func readInput(r io.Reader) (in input, problem string, err error) {
	body := &firstError{r: r}
	h := sha256.New()
	info, ierr := imagefile.Read(io.TeeReader(body, h))
	_, _ = io.Copy(h, body) // the rest of the part; a read error is kept in body.err
	if body.err != nil {
		return input{}, "", body.err
	}
	switch {
	case errors.Is(ierr, imagefile.ErrFormat):
		return input{}, "must be a PNG, JPEG or WebP image", nil
	case ierr != nil:
		return input{}, "is not a readable image: " + ierr.Error(), nil
	}
	in.size = catalog.Size{W: info.Width, H: info.Height}
	h.Sum(in.digest[:0])
	return in, "", nil
}

// firstError is a reader that keeps the first error of r other than io.EOF:
// a broken or oversized body, as opposed to an image that cannot be read.
type firstError struct {
	r   io.Reader
	err error
}

func (f *firstError) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && f.err == nil {
		f.err = err
	}
	return n, err
}

// check applies the catalogue row to the fields gathered: each value, the
// required fields, the derived fields and the combination rules.
func (q *stableRequest) check() []string {
	var problems []string
	for _, f := range q.op.Fields {
		if v, ok := q.values[f.Name]; ok {
			if p := checkValue(&f, v); p != "" {
				problems = append(problems, f.Name+": "+p)
			}
		} else if f.Required && !q.set(f.Name) {
			problems = append(problems, f.Name+": is required")
		}
	}
	for _, f := range q.op.Fields {
		if !f.Derived {
			continue
		}
		want, why, _ := derive(f.Name, q)
		// A value outside the enum is reported above already.
		if got := q.value(f.Name); got != want && slices.Contains(f.Enum, got) {
			problems = append(problems, fmt.Sprintf("%s: must be %s %s", f.Name, want, why))
		}
	}
	for _, rule := range q.op.Rules {
		switch rule.Kind {
		case catalog.Requires:
			if q.set(rule.If) {
				for _, name := range rule.Fields {
					if !q.set(name) {
						problems = append(problems, fmt.Sprintf("%s: is required with %s", name, rule.If))
					}
				}
			}
		case catalog.Excludes:
			if q.set(rule.If) {
				for _, name := range rule.Fields {
					if q.set(name) {
						problems = append(problems, fmt.Sprintf("%s: must not be sent with %s", name, rule.If))
					}
				}
			}
		case catalog.OneOf:
			if !slices.ContainsFunc(rule.Fields, q.set) {
				problems = append(problems, fmt.Sprintf("%s: %s", strings.Join(rule.Fields, ", "), rule.Why))
			}
		}
	}
	return problems
}

// checkValue returns what is wrong with v as a value of f, or "".
func checkValue(f *catalog.Field, v string) string {
	switch f.Type {
	case catalog.Text:
		if !utf8.ValidString(v) {
			return "must be UTF-8 text"
		}
		n := utf8.RuneCountInString(v)
		if float64(n) < f.Min {
			if f.Min == 1 {
				return "cannot be empty"
			}
			return fmt.Sprintf("must be at least %s characters", number(f.Min))
		}
		if f.Max > 0 && float64(n) > f.Max {
			return fmt.Sprintf("must be at most %s characters", number(f.Max))
		}
	case catalog.Integer:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || float64(n) < f.Min || float64(n) > f.Max {
			return fmt.Sprintf("must be an integer from %s to %s", number(f.Min), number(f.Max))
		}
	case catalog.Number:
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(x) || x < f.Min || x > f.Max {
			return fmt.Sprintf("must be a number from %s to %s", number(f.Min), number(f.Max))
		}
	case catalog.Enum:
		if !slices.Contains(f.Enum, v) {
			return fmt.Sprintf("must be one of %s", strings.Join(f.Enum, ", "))
		}
	}
	return ""
}

func number(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// derive returns the value a derived field must have (sent, or left to its
// default) given the rest of the request, and why; ok is false for a field
// the sandbox does not know how to derive, which New refuses to serve.
func derive(name string, q *stableRequest) (value, why string, ok bool) {
	switch name {
	case "mode":
		// generate/sd3: image-to-image exactly when an image is sent (the
		// spec's mode description; aself101/stability-ai-api
		// docs/DECISIONS.md §6 @ 08eea9e).
		if q.sentImage() {
			return "image-to-image", "when an image is sent", true
		}
		return "text-to-image", "without an image", true
	}
	return "", "", false
}

// negotiate reads the Accept header: application/json for a JSON answer;
// image/*, */*, the output format's own type or no header for the image's
// bytes. Of a list, the first acceptable entry wins. It returns a problem
// for anything else (the spec's accept parameter is image/* or
// application/json).
func negotiate(accept, format string) (asJSON bool, problem string) {
	if strings.TrimSpace(accept) == "" {
		return false, ""
	}
	for part := range strings.SplitSeq(accept, ",") {
		// Clients send "application/json; type=image/png" as the spec
		// writes it, a parameter that is not valid syntax unquoted; the
		// media type before it still counts.
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			continue
		}
		switch mt {
		case "application/json":
			return true, ""
		case "image/*", "*/*", "image/" + format:
			return false, ""
		}
	}
	return false, fmt.Sprintf("accept: must be image/* (or image/%s) or application/json, got %q", format, accept)
}
