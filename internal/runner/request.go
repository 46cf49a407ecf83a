package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// RequestFor returns the request of a job: for a v1 job (Engine set) the
// text-to-image body; for a Stable Image job (Service set) the service and
// its form fields in the catalogue's field order, prompt and
// negative_prompt taken from Prompts (weight 1 and -1), image inputs from
// Inputs, and the rest from Params. An image input's value is the path of
// the file to send: Input.Path for a file, and for an image from another
// job (Input.From) what source returns, the path of that job's image (the
// runner passes the absolute path of the file it wrote); source may be nil
// for a job whose inputs are all files. It fails for an unknown service, a
// Param or Input the service does not take (or an image field in Params),
// a field given twice, prompts a Stable Image request cannot carry, and an
// input source cannot resolve; the manifest's validation refuses all but
// the last first.
func RequestFor(j manifest.Job, source func(in manifest.Input) (string, error)) (stability.Request, error) {
	if j.Service == "" {
		if len(j.Inputs) > 0 {
			return stability.Request{}, errors.New("a v1 job takes no image inputs")
		}
		return stability.Request{Engine: j.Engine, TextToImage: textToImage(j)}, nil
	}
	op, ok := catalog.Lookup(j.Service)
	if !ok {
		return stability.Request{}, fmt.Errorf("unknown service %q", j.Service)
	}
	var prompt, negative *string
	for i, p := range j.Prompts {
		slot := &prompt
		switch p.Weight {
		case 1:
		case -1:
			slot = &negative
		default:
			return stability.Request{}, fmt.Errorf("service %s: prompt weight %v: Stable Image prompts take no weights", j.Service, p.Weight)
		}
		if *slot != nil {
			return stability.Request{}, fmt.Errorf("service %s: more than one prompt of weight %v", j.Service, p.Weight)
		}
		*slot = &j.Prompts[i].Text
	}
	for _, p := range j.Params {
		f, ok := op.Field(p.Name)
		if !ok || p.Name == "prompt" || p.Name == "negative_prompt" || f.Type == catalog.Image {
			return stability.Request{}, fmt.Errorf("service %s: field %q does not belong in Params", j.Service, p.Name)
		}
	}
	inputs := make(map[string]string, len(j.Inputs)) // field → path
	for _, in := range j.Inputs {
		if f, ok := op.Field(in.Field); !ok || f.Type != catalog.Image {
			return stability.Request{}, fmt.Errorf("service %s takes no image input %q", j.Service, in.Field)
		}
		if _, dup := inputs[in.Field]; dup {
			return stability.Request{}, fmt.Errorf("service %s: image input %s is given twice", j.Service, in.Field)
		}
		path := in.Path
		if in.From != "" {
			if source == nil {
				return stability.Request{}, fmt.Errorf("image input %s: the image of job %s is not known yet", in.Field, in.From)
			}
			var err error
			if path, err = source(in); err != nil {
				return stability.Request{}, fmt.Errorf("image input %s: %w", in.Field, err)
			}
		}
		if path == "" {
			return stability.Request{}, fmt.Errorf("image input %s: no file", in.Field)
		}
		inputs[in.Field] = path
	}
	fields := make([]stability.Field, 0, len(j.Params)+len(j.Inputs)+2)
	for _, f := range op.Fields {
		switch {
		case f.Name == "prompt" && prompt != nil:
			fields = append(fields, stability.Field{Name: f.Name, Value: *prompt})
		case f.Name == "negative_prompt" && negative != nil:
			fields = append(fields, stability.Field{Name: f.Name, Value: *negative})
		case f.Type == catalog.Image:
			if v, ok := inputs[f.Name]; ok {
				fields = append(fields, stability.Field{Name: f.Name, Value: v})
			}
		default:
			if v, ok := j.Param(f.Name); ok {
				fields = append(fields, stability.Field{Name: f.Name, Value: v})
			}
		}
	}
	if prompt != nil && !hasField(fields, "prompt") || negative != nil && !hasField(fields, "negative_prompt") {
		return stability.Request{}, fmt.Errorf("service %s takes no prompt of that kind", j.Service)
	}
	return stability.Request{Service: j.Service, Fields: fields}, nil
}

func hasField(fields []stability.Field, name string) bool {
	for _, f := range fields {
		if f.Name == name {
			return true
		}
	}
	return false
}

// textToImage returns the v1 text-to-image body of a job.
func textToImage(j manifest.Job) stability.TextToImageRequest {
	prompts := make([]stability.TextPrompt, len(j.Prompts))
	for i, p := range j.Prompts {
		prompts[i] = stability.TextPrompt{Text: p.Text, Weight: p.Weight}
	}
	return stability.TextToImageRequest{
		TextPrompts:        prompts,
		Width:              j.Width,
		Height:             j.Height,
		CfgScale:           j.CfgScale,
		ClipGuidancePreset: j.ClipGuidancePreset,
		Sampler:            j.Sampler,
		Samples:            j.Samples,
		Seed:               j.Seed,
		Steps:              j.Steps,
		StylePreset:        j.StylePreset,
	}
}

// Key identifies what a request asks for: a SHA-256 (hex) of the whole
// request. The journal stores it, so a job whose settings or input images
// changed since it was journaled runs again.
//
// A v1 request hashes its engine id, a newline and its JSON body, as
// journals written before Stable Image jobs existed did, so they still
// resume. A Stable Image request hashes "stable-image/" and the service,
// then one line per field with the name Go-quoted, "=", and the value
// Go-quoted; quoted text holds no newline, so two different requests never
// hash the same bytes, and no v1 body (a JSON object) can match. An image
// input is hashed by its content, not its path: its line holds
// "sha256:" and sums[field], the SHA-256 (hex) of the file the field
// sends, which sums must hold for every image field of req (an unquoted
// value, so it never matches a text field's line). A request without image
// inputs hashes as journals written before inputs existed did.
func Key(req stability.Request, sums map[string]string) (string, error) {
	h := sha256.New()
	if req.Service == "" {
		body, err := json.Marshal(req.TextToImage)
		if err != nil {
			return "", fmt.Errorf("encode request: %w", err)
		}
		h.Write([]byte(req.Engine))
		h.Write([]byte{'\n'})
		h.Write(body)
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	if req.Engine != "" {
		return "", errors.New("request names both an engine and a service")
	}
	op, ok := catalog.Lookup(req.Service)
	if !ok {
		return "", fmt.Errorf("unknown service %q", req.Service)
	}
	b := []byte("stable-image/" + req.Service + "\n")
	for _, f := range req.Fields {
		b = strconv.AppendQuote(b, f.Name)
		b = append(b, '=')
		if cf, ok := op.Field(f.Name); ok && cf.Type == catalog.Image {
			sum, ok := sums[f.Name]
			if !ok || !isSHA256(sum) {
				return "", fmt.Errorf("image input %s: no SHA-256 of its content", f.Name)
			}
			b = append(b, "sha256:"+sum...)
		} else {
			b = strconv.AppendQuote(b, f.Value)
		}
		b = append(b, '\n')
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// isSHA256 reports whether s is a SHA-256 in lower-case hex.
func isSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// fileFormat is how a job's images are stored.
type fileFormat struct {
	name string // the output_format value: png, jpeg or webp
	ext  string // file name extension, with the dot
	text bool   // the format carries the parameters text (PNG's tEXt chunk)
}

// formatOf returns how images asked for with an output_format value are
// stored. Only PNG gets the parameters text: no well-kept Go library writes
// JPEG or WebP metadata, so for those report.json alone holds it.
func formatOf(outputFormat string) (fileFormat, bool) {
	switch outputFormat {
	case "png":
		return fileFormat{"png", ".png", true}, true
	case "jpeg":
		return fileFormat{"jpeg", ".jpg", false}, true
	case "webp":
		return fileFormat{"webp", ".webp", false}, true
	}
	return fileFormat{}, false
}

// outputFormat returns how a job's images are stored: PNG for a v1 job,
// else by the job's output_format, or the service's default when the job
// sets none.
func outputFormat(j manifest.Job) (fileFormat, error) {
	v, ok := j.Param("output_format")
	if j.Service == "" {
		v = "png"
	} else if !ok {
		v = "png"
		if op, ok := catalog.Lookup(j.Service); ok {
			if f, ok := op.Field("output_format"); ok && f.Default != "" {
				v = f.Default
			}
		}
	}
	ff, ok := formatOf(v)
	if !ok {
		return fileFormat{}, fmt.Errorf("output_format %q is not png, jpeg or webp", v)
	}
	return ff, nil
}
