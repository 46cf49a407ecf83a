package stability

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/batch-tool/batch/internal/catalog"
)

// StableImage makes one POST /v2beta/stable-image/{service} attempt of a
// synchronous service of package catalog, e.g. "generate/core", and streams
// its image into sink as artifact 0. It never retries and never waits for a
// rate limit; the caller owns both.
//
// The request is multipart/form-data, built from the service's catalogue
// row: fields of type catalog.Image carry a file path in Value and are sent
// as file parts streamed from disk (their content type told by their first
// 512 bytes); the others are form values. Derived fields are set here, never
// taken from fields: generate/sd3's mode is image-to-image when an image is
// sent. Before anything is sent, it refuses a service not in the catalogue
// or asynchronous (use Submit), a field the row lacks, a derived or repeated
// field, a missing required field, a value outside the field's enum, an
// input that is not a regular PNG, JPEG or WebP file, and a body over the
// API's 10 MiB.
//
// The request asks for image/*. The answer is read as it streams: raw bytes
// with the finish-reason, seed and x-request-id headers, or JSON
// {image, finish_reason, seed}. Its type and first bytes must match the
// output_format field (png when absent); the seed must be a decimal 32-bit
// number, required when the service takes a seed field; the finish reason
// must be SUCCESS or CONTENT_FILTERED (ERROR fails the attempt); a request
// id that is not 1–128 characters of [A-Za-z0-9._:-] is dropped (see
// Artifact.RequestID); the image is held to Options.MaxImageBytes.
//
// Errors, all wrapped with "stable-image SERVICE":
//   - ErrInvalidRequest when the client refused the request, or an input
//     could not be read while the body was being sent (the body never
//     completed, so nothing was charged);
//   - *APIError for a non-2xx answer (the server did no work);
//   - *TransportError when no answer came or the body broke off; Sent
//     reports whether the outcome is unknown; it wraps ctx.Err() when the
//     context ended;
//   - ErrMalformedResponse when a 2xx answer breaks the contract (an image
//     over the size cap included);
//   - *FinishReasonError when the image finished with ERROR;
//   - the sink's own errors, wrapped.
//
// On any error the caller should discard what the sink received.
func (c *Client) StableImage(ctx context.Context, service string, fields []Field, sink Sink) ([]Artifact, error) {
	op := "stable-image " + service
	o, err := lookup(service, false)
	if err != nil {
		return nil, fmt.Errorf("stable-image: %w", err)
	}
	if sink == nil {
		return nil, fmt.Errorf("%s: %w: sink is nil", op, ErrInvalidRequest)
	}
	body, err := c.prepare(o, fields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer body.close()
	resp, err := c.postForm(ctx, op, o.Path(), body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close() // read to its end on success, see decodeJSON
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %w: status %d, want 200", op, ErrMalformedResponse, resp.StatusCode)
	}
	_, takesSeed := o.Field("seed")
	a, err := c.readAnswer(ctx, resp, outputFormat(o, fields), takesSeed, sink)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return []Artifact{a}, nil
}

// Submit makes one POST /v2beta/stable-image/{service} attempt of an
// asynchronous service of package catalog ("upscale/creative",
// "edit/replace-background-and-relight") and returns the generation id the
// API answers with, to be polled with Result. The request is built and
// checked as for StableImage, with accept image/* as the API's own examples
// send it; the answer is 200 {"id": "…"}. The id is checked to be 1–128
// characters of [A-Za-z0-9_-] (the API's are 64 hex digits) so that it can
// go into a URL, and to hold no piece of the API key, since it is kept in
// the journal and reports. Once Submit returns an id the work is paid for:
// the caller should keep the id before doing anything else.
//
// Errors, all wrapped with "stable-image SERVICE", are as for StableImage;
// ErrMalformedResponse also covers an answer without a fit id, in which
// case the work may still have been started and billed.
func (c *Client) Submit(ctx context.Context, service string, fields []Field) (id string, err error) {
	op := "stable-image " + service
	o, err := lookup(service, true)
	if err != nil {
		return "", fmt.Errorf("stable-image: %w", err)
	}
	body, err := c.prepare(o, fields)
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	defer body.close()
	resp, err := c.postForm(ctx, op, o.Path(), body)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := checkContentType(resp.Header, "application/json", c.red); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	var v struct {
		ID *string `json:"id"`
	}
	if err := c.decodeJSON(ctx, op, resp.Body, &v); err != nil {
		return "", err
	}
	switch {
	case v.ID == nil:
		return "", fmt.Errorf("%s: %w: no generation id in the response", op, ErrMalformedResponse)
	case !ValidGenerationID(*v.ID):
		return "", fmt.Errorf("%s: %w: generation id %s is not 1–128 characters of [A-Za-z0-9_-]", op, ErrMalformedResponse, c.red.quote(*v.ID))
	case c.red.leaks(*v.ID):
		return "", fmt.Errorf("%s: %w: the generation id holds a piece of the API key", op, ErrMalformedResponse)
	}
	return *v.ID, nil
}

// Result makes one GET /v2beta/results/{id} attempt for a generation id
// from Submit. While the generation runs the API answers 202 and Result
// returns done false with no error (the 202's body is not read for more:
// its status says it all). Once it is finished the image is streamed into
// sink as for StableImage, except that any of png, jpeg and webp is taken,
// since the output_format asked is not known here: Artifact.Format says
// which came. The seed is required, as both asynchronous services take one.
// The id is checked before it goes into the URL, as Submit checks it.
//
// Errors, wrapped with "result ID", are as for StableImage; a generation
// that does not exist, has expired (after 24 h) or belongs to another key
// is an *APIError 404 named "generation_not_found".
func (c *Client) Result(ctx context.Context, id string, sink Sink) (arts []Artifact, done bool, err error) {
	switch {
	case !ValidGenerationID(id):
		return nil, false, fmt.Errorf("result: %w: generation id %s is not 1–128 characters of [A-Za-z0-9_-]", ErrInvalidRequest, c.red.quote(id))
	case c.red.leaks(id):
		return nil, false, fmt.Errorf("result: %w: the generation id holds a piece of the API key", ErrInvalidRequest)
	}
	op := "result " + id
	if sink == nil {
		return nil, false, fmt.Errorf("%s: %w: sink is nil", op, ErrInvalidRequest)
	}
	resp, err := c.send(ctx, op, http.MethodGet, "/v2beta/results/"+id, c.resultAccept, nil)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusAccepted:
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrain) // {"id":…,"status":"in-progress"}
		return nil, false, nil
	case http.StatusOK:
	default:
		return nil, false, fmt.Errorf("%s: %w: status %d, want 200 or 202", op, ErrMalformedResponse, resp.StatusCode)
	}
	a, err := c.readAnswer(ctx, resp, "", true, sink)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", op, err)
	}
	return []Artifact{a}, true, nil
}

// readAnswer streams a 200 image answer into sink (see readImage), holding
// it to the size cap, and reports a connection that broke off as a
// *TransportError, whatever the parser made of it.
func (c *Client) readAnswer(ctx context.Context, resp *http.Response, want string, needSeed bool, sink Sink) (Artifact, error) {
	mt, _, _ := parseContentType(resp.Header.Get("Content-Type"))
	rr := &recordingReader{r: resp.Body}
	body, err := c.capAnswer(resp, rr, mt == "application/json", 1)
	if err != nil {
		return Artifact{}, err
	}
	a, err := readImage(resp.Header, body, want, needSeed, imageCap{Sink: sink, max: c.maxImage}, c.red, c.bufs)
	if err != nil && rr.err != nil {
		return Artifact{}, c.transportError(ctx, nil, true, rr.err)
	}
	return a, err
}

// lookup returns the catalogue row of service, refusing one that is not
// there or whose answer is not of the kind the caller handles.
func lookup(service string, async bool) (*catalog.Operation, error) {
	o, ok := catalog.Lookup(service)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: unknown service %q; the services are %s", ErrInvalidRequest, service, strings.Join(catalog.Services(), ", "))
	case o.Async && !async:
		return nil, fmt.Errorf("%w: %s is asynchronous: send it with Submit and fetch the image with Result", ErrInvalidRequest, service)
	case !o.Async && async:
		return nil, fmt.Errorf("%w: %s answers synchronously: send it with StableImage", ErrInvalidRequest, service)
	}
	return o, nil
}

// prepare checks fields against o, adds the derived fields and opens the
// body. Errors wrap ErrInvalidRequest.
func (c *Client) prepare(o *catalog.Operation, fields []Field) (*formBody, error) {
	sent, err := c.checkFields(o, fields)
	if err != nil {
		return nil, err
	}
	return c.newFormBody(sent, func(name string) bool {
		f, _ := o.Field(name)
		return f.Type == catalog.Image
	})
}

// checkFields refuses fields that o's catalogue row does not allow, all
// problems at once, and returns the fields to send: fields in their order,
// then the derived ones.
func (c *Client) checkFields(o *catalog.Operation, fields []Field) ([]Field, error) {
	var problems []string
	has := func(name string) bool {
		return slices.ContainsFunc(fields, func(f Field) bool { return f.Name == name })
	}
	for i, f := range fields {
		cf, ok := o.Field(f.Name)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s takes no field %q", o.Service, c.clean(f.Name, 64)))
		case slices.ContainsFunc(fields[:i], func(g Field) bool { return g.Name == f.Name }):
			problems = append(problems, fmt.Sprintf("field %s is given twice", f.Name))
		case cf.Derived:
			problems = append(problems, fmt.Sprintf("field %s is set by the client from the other fields, never given", f.Name))
		case cf.Type == catalog.Enum && !slices.Contains(cf.Enum, f.Value):
			problems = append(problems, fmt.Sprintf("field %s: %q is not one of %s", f.Name, c.clean(f.Value, 64), strings.Join(cf.Enum, ", ")))
		case cf.Type == catalog.Image && f.Value == "":
			problems = append(problems, fmt.Sprintf("field %s: no file path", f.Name))
		}
	}
	sent := slices.Clip(fields)
	for _, cf := range o.Fields {
		switch {
		case cf.Required && !has(cf.Name):
			problems = append(problems, fmt.Sprintf("field %s is required", cf.Name))
		case cf.Derived:
			v, ok, err := derive(cf.Name, has)
			if err != nil {
				problems = append(problems, err.Error())
			} else if ok {
				sent = append(sent, Field{Name: cf.Name, Value: v})
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidRequest, strings.Join(problems, "; "))
	}
	return sent, nil
}

// derive returns the value of a derived field given which fields are set,
// and whether to send it at all.
func derive(name string, has func(string) bool) (string, bool, error) {
	switch name {
	case "mode": // generate/sd3: image-to-image exactly when an image is sent
		if has("image") {
			return "image-to-image", true, nil
		}
		return "", false, nil // the API's default, text-to-image
	}
	return "", false, fmt.Errorf("field %s is derived, and the client does not know how to set it", name)
}

// outputFormat returns the output_format fields ask for, else the field's
// default; "" when o has no such field.
func outputFormat(o *catalog.Operation, fields []Field) string {
	for _, f := range fields {
		if f.Name == "output_format" {
			return f.Value
		}
	}
	if f, ok := o.Field("output_format"); ok {
		return f.Default
	}
	return ""
}

// ValidGenerationID reports whether id, an async generation id, is 1–128
// characters of [A-Za-z0-9_-]: a single plain URL path segment. An id such
// as "../../v1/user/balance" would otherwise send the key to another
// endpoint.
func ValidGenerationID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
