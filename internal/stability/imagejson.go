package stability

import (
	"fmt"
	"io"
)

// The Stable Image JSON answer is {"image":"<base64>","finish_reason":"…",
// "seed":N}, with megabytes of base64; scanImage reads it with the streaming
// jsonLexer, so the image is never held whole.

// scanImage reads a JSON Stable Image answer from r and streams its image
// into the writer begin returns, calling begin once, when the image's
// string starts. It returns the seed and finish reason; needSeed requires
// the seed, which the spec lists as optional in this shape. Errors about
// the body's shape wrap ErrMalformedResponse; begin's and the writer's are
// wrapped with "artifact 0"; r's read errors are returned as they are. Its
// buffers are lent by bufs.
func scanImage(r io.Reader, begin func() (io.Writer, error), needSeed bool, red *redactor, bufs *buffers) (Artifact, error) {
	l := newJSONLexer(r, red, bufs)
	defer l.release()
	var a Artifact
	if err := l.expect('{'); err != nil {
		return a, err
	}
	var hasImage, hasSeed, hasReason bool
	err := l.members(func(key []byte) error {
		switch string(key) {
		case "image":
			if hasImage {
				return malformed("duplicate key %s", l.red.quote(string(key)))
			}
			hasImage = true
			if err := l.openString("image"); err != nil {
				return err
			}
			w, err := begin()
			if err != nil {
				return fmt.Errorf("artifact 0: %w", err)
			}
			werr, err := l.base64To(w, "image")
			if werr != nil {
				return fmt.Errorf("artifact 0: %w", werr)
			}
			return err
		case "seed":
			if hasSeed {
				return malformed("duplicate key %s", l.red.quote(string(key)))
			}
			hasSeed = true
			seed, err := l.uint32Value("seed")
			if err != nil {
				return err
			}
			a.Seed, err = checkSeed(seed, l.red)
			return err
		case "finish_reason":
			if hasReason {
				return malformed("duplicate key %s", l.red.quote(string(key)))
			}
			hasReason = true
			v, err := l.shortStringValue("finish_reason")
			if err != nil {
				return err
			}
			if a.FinishReason = finishReason(string(v)); a.FinishReason == "" {
				return malformed("unknown finish_reason %s", l.red.quote(string(v)))
			}
			return nil
		}
		return l.skipValue(1)
	})
	switch {
	case err != nil:
		return a, err
	case !hasImage:
		return a, malformed("no image in the response")
	case !hasReason:
		return a, malformed("no finish_reason in the response")
	case needSeed && !hasSeed:
		return a, malformed("no seed in the response")
	}
	return a, l.end()
}
