package stability

import (
	"fmt"
	"io"
)

// The v1 JSON text-to-image answer is {"artifacts":[{"base64":"…","seed":N,
// "finishReason":"…"},…]} with 3–4 MB of base64 per image; artifactScanner
// reads it with the streaming jsonLexer, so no image is ever held whole.

// scanArtifacts reads a JSON text-to-image body from r, streams each
// artifact's image into sink and returns the artifacts' metadata in order,
// each with Format "png" and the given request id. It accepts at most limit
// artifacts, checking before calling sink.Begin, so the sink never sees an
// index ≥ limit. Errors about the body's shape wrap ErrMalformedResponse;
// sink errors and r's read errors are returned wrapped as they are. Its
// buffers are lent by bufs.
func scanArtifacts(r io.Reader, limit int, sink Sink, requestID string, red *redactor, bufs *buffers) ([]Artifact, error) {
	s := &artifactScanner{jsonLexer: newJSONLexer(r, red, bufs), limit: limit, sink: sink, requestID: requestID}
	defer s.release()
	return s.body()
}

type artifactScanner struct {
	*jsonLexer
	limit     int
	sink      Sink
	requestID string
}

func (s *artifactScanner) body() ([]Artifact, error) {
	if err := s.expect('{'); err != nil {
		return nil, err
	}
	var arts []Artifact
	seen := false
	err := s.members(func(key []byte) error {
		if string(key) != "artifacts" {
			return s.skipValue(0)
		}
		if seen {
			return malformed("duplicate key %s", s.red.quote(string(key)))
		}
		seen = true
		var err error
		arts, err = s.artifacts()
		return err
	})
	if err != nil {
		return nil, err
	}
	if !seen {
		return nil, malformed(`no "artifacts" in the response`)
	}
	if err := s.end(); err != nil {
		return nil, err
	}
	return arts, nil
}

func (s *artifactScanner) artifacts() ([]Artifact, error) {
	c, err := s.peek()
	if err != nil {
		return nil, err
	}
	if c != '[' {
		return nil, malformed(`"artifacts" is not an array`)
	}
	s.br.Discard(1)
	var arts []Artifact
	if c, err := s.peek(); err != nil {
		return nil, err
	} else if c == ']' {
		s.br.Discard(1)
		return arts, nil
	}
	for {
		i := len(arts)
		if i >= s.limit {
			return nil, malformed("more than the %d artifacts requested", s.limit)
		}
		a, err := s.artifact(i)
		if err != nil {
			return nil, err
		}
		arts = append(arts, a)
		c, err := s.next()
		if err != nil {
			return nil, err
		}
		switch c {
		case ',':
		case ']':
			return arts, nil
		default:
			return nil, malformed("unexpected %s after artifact %d", quoteByte(c), i)
		}
	}
}

// artifact reads artifact i's object, streaming its image into the sink,
// and calls sink.End once the object is complete.
func (s *artifactScanner) artifact(i int) (Artifact, error) {
	a := Artifact{Format: "png", RequestID: s.requestID}
	if c, err := s.peek(); err != nil {
		return a, err
	} else if c != '{' {
		return a, malformed("artifact %d is not an object", i)
	}
	s.br.Discard(1)
	var hasImage, hasSeed, hasReason bool
	err := s.members(func(key []byte) error {
		switch string(key) {
		case "base64":
			if hasImage {
				return malformed("artifact %d: duplicate key %s", i, s.red.quote(string(key)))
			}
			hasImage = true
			return s.image(i)
		case "seed":
			if hasSeed {
				return malformed("artifact %d: duplicate key %s", i, s.red.quote(string(key)))
			}
			hasSeed = true
			seed, err := s.uint32Value(fmt.Sprintf("artifact %d: seed", i))
			if err != nil {
				return err
			}
			a.Seed, err = checkSeed(seed, s.red)
			return err
		case "finishReason":
			if hasReason {
				return malformed("artifact %d: duplicate key %s", i, s.red.quote(string(key)))
			}
			hasReason = true
			v, err := s.shortStringValue(fmt.Sprintf("artifact %d: finishReason", i))
			if err != nil {
				return err
			}
			if a.FinishReason = finishReason(string(v)); a.FinishReason == "" {
				return malformed("artifact %d: unknown finishReason %s", i, s.red.quote(string(v)))
			}
			return nil
		}
		return s.skipValue(1)
	})
	switch {
	case err != nil:
		return a, err
	case !hasImage:
		return a, malformed("artifact %d has no base64 image", i)
	case !hasSeed:
		return a, malformed("artifact %d has no seed", i)
	case !hasReason:
		return a, malformed("artifact %d has no finishReason", i)
	case a.FinishReason == FinishError:
		return a, &FinishReasonError{Artifact: i, RequestID: s.requestID}
	}
	if err := s.sink.End(i, a); err != nil {
		return a, fmt.Errorf("artifact %d: %w", i, err)
	}
	return a, nil
}

// image decodes a base64 JSON string into sink.Begin(i)'s writer.
func (s *artifactScanner) image(i int) error {
	label := fmt.Sprintf("artifact %d", i)
	if err := s.openString(label + ": base64"); err != nil {
		return err
	}
	w, err := s.sink.Begin(i)
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	werr, err := s.base64To(w, label)
	if werr != nil {
		return fmt.Errorf("%s: %w", label, werr)
	}
	return err
}
