package stability

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// What is read from a 2xx image answer, for v1 and Stable Image alike.

// maxRequestID is the longest x-request-id header kept, in bytes.
const maxRequestID = 128

// requestID returns the answer's x-request-id header when it is 1–128
// characters of [A-Za-z0-9._:-] and holds no piece of the key, else "".
// Another value is dropped, not an error: the id only helps Stability
// support, while the image it comes with was paid for.
func requestID(h http.Header, red *redactor) string {
	v := h.Get("X-Request-Id")
	if len(v) == 0 || len(v) > maxRequestID || red.leaks(v) {
		return ""
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return ""
		}
	}
	return v
}

// seedHeader reads the seed header: a decimal whole number in [0, 2³²-1].
// Without one it returns 0, or an error when need is set.
func seedHeader(h http.Header, need bool, red *redactor) (uint32, error) {
	v := h.Get("Seed")
	if v == "" {
		if need {
			return 0, malformed("no Seed header")
		}
		return 0, nil
	}
	seed, err := strconv.ParseUint(v, 10, 32) // digits only: no sign, no "_"
	if err != nil {
		return 0, malformed("Seed header %s is not a 32-bit unsigned integer", red.quote(v))
	}
	return checkSeed(uint32(seed), red)
}

// checkSeed refuses a seed whose digits are a piece of the key: it would
// be written into files and reports, and cannot be scrubbed.
func checkSeed(seed uint32, red *redactor) (uint32, error) {
	if red.leaks(strconv.FormatUint(uint64(seed), 10)) {
		return 0, malformed("the seed holds a piece of the API key")
	}
	return seed, nil
}

// finishHeader reads the finish-reason header, which must be one of the
// finish reasons.
func finishHeader(h http.Header, red *redactor) (string, error) {
	v := h.Get("Finish-Reason")
	r := finishReason(v)
	if r == "" {
		return "", malformed("Finish-Reason header %s is not SUCCESS, ERROR or CONTENT_FILTERED", red.quote(v))
	}
	return r, nil
}

// finishReason returns the constant equal to v, or "" when v is none of them.
func finishReason(v string) string {
	for _, r := range [...]string{FinishSuccess, FinishError, FinishContentFiltered} {
		if v == r {
			return r
		}
	}
	return ""
}

// imageFormats are the formats Stable Image answers in, as output_format
// names them.
var imageFormats = [...]string{"png", "jpeg", "webp"}

// formatOf returns the output_format name of an image media type, e.g.
// "jpeg" for "image/jpeg", or "" for another type.
func formatOf(mediaType string) string {
	for _, f := range imageFormats {
		if mediaType == "image/"+f {
			return f
		}
	}
	return ""
}

// sniffFormat returns the format of an image by its first bytes (at most
// 512 are read, as http.DetectContentType does), and the detected media
// type, without parameters, for messages.
func sniffFormat(head []byte) (format, detected string) {
	detected, _, _ = strings.Cut(http.DetectContentType(head), ";") // "text/plain; charset=utf-8"
	return formatOf(detected), detected
}

// parseContentType returns the media type of a Content-Type header and its
// type parameter, both lower-case. It is more lenient than
// mime.ParseMediaType, which refuses the unquoted "/" of the API's own
// "application/json; type=image/png".
func parseContentType(v string) (mediaType, typ string, ok bool) {
	mt, params, _ := strings.Cut(v, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	major, minor, found := strings.Cut(mt, "/")
	if !found || major == "" || minor == "" || strings.ContainsAny(mt, " \t\"") {
		return "", "", false
	}
	for p := range strings.SplitSeq(params, ";") {
		k, val, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "type") {
			typ = strings.ToLower(strings.Trim(strings.TrimSpace(val), `"`))
		}
	}
	return mt, typ, true
}

// sniffLen is how many leading bytes of an answer's image are kept to
// confirm its format: the longest signature, WebP's "RIFF....WEBPVP", has 14.
const sniffLen = 16

// oneImage begins image 0 of a sink and keeps the image's first bytes, so
// its format can be confirmed once it is written.
type oneImage struct {
	sink Sink
	w    io.Writer
	head [sniffLen]byte
	n    int
}

func (o *oneImage) begin() (io.Writer, error) {
	w, err := o.sink.Begin(0)
	if err != nil {
		return nil, err
	}
	o.w = w
	return o, nil
}

func (o *oneImage) Write(p []byte) (int, error) {
	if o.n < len(o.head) {
		o.n += copy(o.head[o.n:], p)
	}
	return o.w.Write(p)
}

// readImage streams a 200 Stable Image answer of one image into sink and
// returns its metadata. The answer is either raw bytes (Content-Type
// image/png, image/jpeg or image/webp, with finish-reason, seed and
// x-request-id headers) or JSON ({"image": base64, "finish_reason",
// "seed"}, Content-Type application/json, with or without
// "; type=image/…"). want is the output_format asked, or "" when any of the
// three will do; the declared type and the image's first bytes must both
// match it. needSeed requires a seed. A finish reason of ERROR is a
// *FinishReasonError, returned before the sink sees the image when the headers
// tell it. Errors about the answer wrap ErrMalformedResponse and quote the
// server only through red; the sink's errors are wrapped as they are; a
// read error is returned as it is. Its buffers are lent by bufs.
func readImage(h http.Header, body io.Reader, want string, needSeed bool, sink Sink, red *redactor, bufs *buffers) (Artifact, error) {
	ct := h.Get("Content-Type")
	mt, typ, ok := parseContentType(ct)
	if !ok {
		return Artifact{}, malformed("Content-Type %s is not a media type", red.quote(ct))
	}
	isJSON := mt == "application/json"
	declared := formatOf(mt) // "" for JSON without a type parameter
	if isJSON && typ != "" {
		if declared = formatOf(typ); declared == "" {
			return Artifact{}, malformed("Content-Type %s: type is not image/png, image/jpeg or image/webp", red.quote(ct))
		}
	}
	switch {
	case !isJSON && declared == "":
		return Artifact{}, malformed("Content-Type %s, want image/png, image/jpeg, image/webp or application/json", red.quote(ct))
	case want != "" && declared != "" && declared != want:
		return Artifact{}, malformed("Content-Type %s, but output_format %s was asked", red.quote(ct), want)
	}
	img := &oneImage{sink: sink}
	var a Artifact
	var err error
	if isJSON {
		if a, err = scanImage(body, img.begin, needSeed, red, bufs); err != nil {
			return Artifact{}, err
		}
		if a.FinishReason == FinishError {
			return Artifact{}, &FinishReasonError{RequestID: requestID(h, red)}
		}
	} else {
		if a.Seed, err = seedHeader(h, needSeed, red); err != nil {
			return Artifact{}, err
		}
		if a.FinishReason, err = finishHeader(h, red); err != nil {
			return Artifact{}, err
		}
		if a.FinishReason == FinishError {
			return Artifact{}, &FinishReasonError{RequestID: requestID(h, red)}
		}
		w, err := img.begin()
		if err != nil {
			return Artifact{}, fmt.Errorf("artifact 0: %w", err)
		}
		// A read error is the connection's: the caller reports it as such.
		if _, err := bufs.copyPooled(w, body); err != nil {
			return Artifact{}, fmt.Errorf("artifact 0: %w", err)
		}
	}
	got, detected := sniffFormat(img.head[:img.n])
	switch {
	case got == "":
		return Artifact{}, malformed("the image is %s by its first bytes, not PNG, JPEG or WebP", detected)
	case declared != "" && got != declared:
		return Artifact{}, malformed("the image is %s by its first bytes, but Content-Type %s", got, red.quote(ct))
	case want != "" && got != want:
		return Artifact{}, malformed("the image is %s by its first bytes, but output_format %s was asked", got, want)
	}
	a.Format, a.RequestID = got, requestID(h, red)
	if err := sink.End(0, a); err != nil {
		return Artifact{}, fmt.Errorf("artifact 0: %w", err)
	}
	return a, nil
}

// imageCap holds each image of an answer to a size: its Begin wraps the
// sink's writer so that the bytes past max fail the write. The error wraps
// ErrMalformedResponse, not the sink's failure: the answer is at fault.
type imageCap struct {
	Sink
	max int64 // bytes per image
}

func (c imageCap) Begin(i int) (io.Writer, error) {
	w, err := c.Sink.Begin(i)
	if err != nil {
		return nil, err
	}
	return &cappedWriter{w: w, left: c.max, max: c.max}, nil
}

type cappedWriter struct {
	w         io.Writer
	left, max int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		return 0, imageTooLarge(c.max)
	}
	c.left -= int64(len(p))
	return c.w.Write(p)
}

func imageTooLarge(max int64) error {
	return malformed("the image is over the %d-byte limit on an answer's image", max)
}

// answerCap reads at most limit bytes of a body; reading past them returns
// a malformed-response error, which the callers' recordingReader, below
// it, does not take for a broken connection.
type answerCap struct {
	r     io.Reader
	left  int64
	limit int64
}

func (a *answerCap) Read(p []byte) (int, error) {
	if a.left <= 0 {
		// The limit is reached: one byte more tells a body that ends here
		// from one that goes on.
		var one [1]byte
		n, err := a.r.Read(one[:])
		if n == 0 {
			return 0, err
		}
		return 0, malformed("the answer is over its limit of %d bytes", a.limit)
	}
	if int64(len(p)) > a.left {
		p = p[:a.left]
	}
	n, err := a.r.Read(p)
	a.left -= int64(n)
	return n, err
}

// capAnswer refuses an answer whose Content-Length is over its limit,
// before its body is read, and returns body held to that limit. A raw
// image answer's limit is the image cap, which imageCap also enforces as
// the bytes arrive. A JSON answer of n images may have twice the cap per
// image (base64 makes an image a third larger; the rest leaves room for
// escapes and whitespace) plus 1 MiB, so that no skipped field can make it
// endless.
func (c *Client) capAnswer(resp *http.Response, body io.Reader, isJSON bool, n int) (io.Reader, error) {
	limit := c.maxImage
	if isJSON {
		limit = int64(n)*2*c.maxImage + 1<<20
	}
	if resp.ContentLength > limit {
		return nil, malformed("the answer's Content-Length %d is over its limit of %d bytes", resp.ContentLength, limit)
	}
	if !isJSON {
		return body, nil
	}
	return &answerCap{r: body, left: limit, limit: limit}, nil
}
