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
// negative_prompt taken from Prompts (weight 1 and -1) and the rest from
// Params. It fails for an unknown service, a Param the service does not
// take, or prompts a Stable Image request cannot carry; the manifest's
// validation refuses all of these first.
func RequestFor(j manifest.Job) (stability.Request, error) {
	if j.Service == "" {
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
		if _, ok := op.Field(p.Name); !ok || p.Name == "prompt" || p.Name == "negative_prompt" {
			return stability.Request{}, fmt.Errorf("service %s: field %q does not belong in Params", j.Service, p.Name)
		}
	}
	fields := make([]stability.Field, 0, len(j.Params)+2)
	for _, f := range op.Fields {
		switch {
		case f.Name == "prompt" && prompt != nil:
			fields = append(fields, stability.Field{Name: f.Name, Value: *prompt})
		case f.Name == "negative_prompt" && negative != nil:
			fields = append(fields, stability.Field{Name: f.Name, Value: *negative})
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
// request. The journal stores it, so a job whose settings changed since it
// was journaled runs again.
//
// A v1 request hashes its engine id, a newline and its JSON body, as
// journals written before Stable Image jobs existed did, so they still
// resume. A Stable Image request hashes "stable-image/" and the service,
// then one line per field with the name and value Go-quoted; quoted text
// holds no newline, so two different requests never hash the same bytes,
// and no v1 body (a JSON object) can match. An image input is hashed by
// its path, not its bytes.
func Key(req stability.Request) (string, error) {
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
	b := []byte("stable-image/" + req.Service + "\n")
	for _, f := range req.Fields {
		b = strconv.AppendQuote(b, f.Name)
		b = append(b, '=')
		b = strconv.AppendQuote(b, f.Value)
		b = append(b, '\n')
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// jobKey is Key of the job's request.
func jobKey(j manifest.Job) (string, error) {
	req, err := RequestFor(j)
	if err != nil {
		return "", err
	}
	return Key(req)
}

// fileFormat is how a job's images are stored.
type fileFormat struct {
	ext  string // file name extension, with the dot
	text bool   // the format carries the parameters text (PNG's tEXt chunk)
}

// formatOf returns how images asked for with an output_format value are
// stored. Only PNG gets the parameters text: no well-kept Go library writes
// JPEG or WebP metadata, so for those report.json alone holds it.
func formatOf(outputFormat string) (fileFormat, bool) {
	switch outputFormat {
	case "png":
		return fileFormat{".png", true}, true
	case "jpeg":
		return fileFormat{".jpg", false}, true
	case "webp":
		return fileFormat{".webp", false}, true
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
