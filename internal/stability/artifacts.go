package stability

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON text-to-image answer is {"artifacts":[{"base64":"…","seed":N,
// "finishReason":"…"},…]} with 3–4 MB of base64 per image. json.Decoder
// would hold each string, and so each image, whole; artifactScanner instead
// reads the body once through a small buffer and decodes base64 straight
// into the Sink, so memory stays constant whatever the image size.

const (
	scanBufferSize = 64 << 10 // bytes buffered from the body
	copyBufferSize = 32 << 10 // bytes of decoded image per Sink write
	maxShortString = 64       // bytes kept of a key or finishReason
	maxNumberLen   = 64       // bytes of a number token
	maxDepth       = 64       // nesting of skipped values
)

// scanArtifacts reads a JSON text-to-image body from r, streams each
// artifact's image into sink and returns the artifacts' metadata in order.
// It accepts at most limit artifacts, checking before calling sink.Begin, so
// the sink never sees an index ≥ limit. Errors about the body's shape wrap
// ErrMalformedResponse; sink errors and r's read errors are returned wrapped
// as they are.
func scanArtifacts(r io.Reader, limit int, sink Sink) ([]Artifact, error) {
	s := &artifactScanner{
		br:    bufio.NewReaderSize(r, scanBufferSize),
		limit: limit,
		sink:  sink,
	}
	s.str.br = s.br
	return s.body()
}

type artifactScanner struct {
	br      *bufio.Reader
	limit   int
	sink    Sink
	str     stringReader
	copyBuf []byte
	short   [maxShortString]byte
}

// malformed returns an error about the body's shape.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedResponse, fmt.Sprintf(format, args...))
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
			return malformed("duplicate key %q", key)
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
	// Only whitespace may follow; reading to the end also drains the body.
	c, err := s.skipSpace()
	if err != io.EOF {
		if err == nil {
			err = malformed("unexpected %s after the response object", quoteByte(c))
		}
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
	var a Artifact
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
				return malformed("artifact %d: duplicate key %q", i, key)
			}
			hasImage = true
			return s.image(i)
		case "seed":
			if hasSeed {
				return malformed("artifact %d: duplicate key %q", i, key)
			}
			hasSeed = true
			seed, err := s.seed(i)
			a.Seed = seed
			return err
		case "finishReason":
			if hasReason {
				return malformed("artifact %d: duplicate key %q", i, key)
			}
			hasReason = true
			reason, err := s.finishReason(i)
			a.FinishReason = reason
			return err
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
	}
	if err := s.sink.End(i, a); err != nil {
		return a, fmt.Errorf("artifact %d: %w", i, err)
	}
	return a, nil
}

// image decodes a base64 JSON string into sink.Begin(i)'s writer.
func (s *artifactScanner) image(i int) error {
	if c, err := s.peek(); err != nil {
		return err
	} else if c != '"' {
		return malformed("artifact %d: base64 is not a string", i)
	}
	s.br.Discard(1)
	w, err := s.sink.Begin(i)
	if err != nil {
		return fmt.Errorf("artifact %d: %w", i, err)
	}
	if s.copyBuf == nil {
		s.copyBuf = make([]byte, copyBufferSize)
	}
	s.str.reset()
	dec := base64.NewDecoder(base64.StdEncoding, &s.str)
	for {
		n, rerr := dec.Read(s.copyBuf)
		if n > 0 {
			if _, err := w.Write(s.copyBuf[:n]); err != nil {
				return fmt.Errorf("artifact %d: %w", i, err)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if _, ok := errors.AsType[base64.CorruptInputError](rerr); ok {
			return malformed("artifact %d: base64: %v", i, rerr)
		}
		if rerr != nil {
			return rerr
		}
	}
}

func (s *artifactScanner) seed(i int) (uint32, error) {
	tok, err := s.number()
	if err != nil {
		return 0, err
	}
	v, perr := strconv.ParseUint(string(tok), 10, 32)
	if perr != nil || tok[0] == '0' && len(tok) > 1 {
		return 0, malformed("artifact %d: seed %s is not a 32-bit unsigned integer", i, tok)
	}
	return uint32(v), nil
}

func (s *artifactScanner) finishReason(i int) (string, error) {
	if c, err := s.peek(); err != nil {
		return "", err
	} else if c != '"' {
		return "", malformed("artifact %d: finishReason is not a string", i)
	}
	s.br.Discard(1)
	v, err := s.shortString()
	if err != nil {
		return "", err
	}
	for _, r := range [...]string{FinishSuccess, FinishError, FinishContentFiltered} {
		if string(v) == r {
			return r, nil
		}
	}
	return "", malformed("artifact %d: unknown finishReason %q", i, v)
}

// members reads an object's members after its '{', calling fn with each key
// once the ':' is consumed; fn must consume the value.
func (s *artifactScanner) members(fn func(key []byte) error) error {
	c, err := s.peek()
	if err != nil {
		return err
	}
	if c == '}' {
		s.br.Discard(1)
		return nil
	}
	for {
		if err := s.expect('"'); err != nil {
			return err
		}
		key, err := s.shortString()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := fn(key); err != nil {
			return err
		}
		c, err := s.next()
		if err != nil {
			return err
		}
		switch c {
		case ',':
		case '}':
			return nil
		default:
			return malformed("unexpected %s in an object", quoteByte(c))
		}
	}
}

// skipValue reads and discards one JSON value, keeping nothing but the
// nesting depth.
func (s *artifactScanner) skipValue(depth int) error {
	if depth > maxDepth {
		return malformed("nesting deeper than %d", maxDepth)
	}
	c, err := s.peek()
	if err != nil {
		return err
	}
	switch {
	case c == '"':
		s.br.Discard(1)
		s.str.reset()
		_, err := io.Copy(io.Discard, &s.str)
		return err
	case c == '{':
		s.br.Discard(1)
		return s.members(func([]byte) error { return s.skipValue(depth + 1) })
	case c == '[':
		s.br.Discard(1)
		if c, err := s.peek(); err != nil {
			return err
		} else if c == ']' {
			s.br.Discard(1)
			return nil
		}
		for {
			if err := s.skipValue(depth + 1); err != nil {
				return err
			}
			c, err := s.next()
			if err != nil {
				return err
			}
			switch c {
			case ',':
			case ']':
				return nil
			default:
				return malformed("unexpected %s in an array", quoteByte(c))
			}
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		_, err := s.number()
		return err
	}
}

func (s *artifactScanner) literal(want string) error {
	got, err := s.br.Peek(len(want))
	if string(got) != want {
		if err != nil {
			return unexpectedEOF(err)
		}
		return malformed("invalid literal %q", got)
	}
	s.br.Discard(len(want))
	return nil
}

// number reads a JSON number token of at most maxNumberLen bytes.
func (s *artifactScanner) number() ([]byte, error) {
	if _, err := s.peek(); err != nil {
		return nil, err
	}
	n := 0
	for {
		c, err := s.br.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			s.br.UnreadByte()
			break
		}
		if n == len(s.short) {
			return nil, malformed("number longer than %d bytes", maxNumberLen)
		}
		s.short[n] = c
		n++
	}
	tok := s.short[:n]
	if !validNumber(tok) {
		if n == 0 {
			c, _ := s.br.Peek(1)
			return nil, malformed("unexpected %s where a value belongs", quoteByte(c[0]))
		}
		return nil, malformed("invalid number %q", tok)
	}
	return tok, nil
}

// validNumber reports whether b follows the JSON number grammar.
func validNumber(b []byte) bool {
	i := 0
	digits := func() int {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// shortString reads the rest of a string whose '"' is consumed. It returns
// at most maxShortString bytes; a longer string returns an empty slice,
// which matches no key or value we look for.
func (s *artifactScanner) shortString() ([]byte, error) {
	s.str.reset()
	n := 0
	for {
		m, err := s.str.Read(s.short[n:])
		n += m
		if err == io.EOF {
			return s.short[:n], nil
		}
		if err != nil {
			return nil, err
		}
		if n == len(s.short) {
			if _, err := io.Copy(io.Discard, &s.str); err != nil {
				return nil, err
			}
			return s.short[:0], nil
		}
	}
}

// next skips whitespace and consumes one byte.
func (s *artifactScanner) next() (byte, error) {
	if _, err := s.peek(); err != nil {
		return 0, err
	}
	return s.br.ReadByte()
}

// expect consumes one byte after whitespace and checks it is want.
func (s *artifactScanner) expect(want byte) error {
	c, err := s.next()
	if err != nil {
		return err
	}
	if c != want {
		return malformed("unexpected %s, want %s", quoteByte(c), quoteByte(want))
	}
	return nil
}

// peek skips whitespace and returns the next byte without consuming it.
// The end of the body is a malformed-response error, since a value or a
// delimiter must follow.
func (s *artifactScanner) peek() (byte, error) {
	c, err := s.skipSpace()
	return c, unexpectedEOF(err)
}

// skipSpace skips whitespace and returns the next byte without consuming
// it, or io.EOF at the end of the body.
func (s *artifactScanner) skipSpace() (byte, error) {
	for {
		b, err := s.br.Peek(1)
		if err != nil {
			return 0, err
		}
		switch b[0] {
		case ' ', '\t', '\n', '\r':
			s.br.Discard(1)
		default:
			return b[0], nil
		}
	}
}

// unexpectedEOF turns the end of the body in the middle of a value into a
// malformed-response error; other (read) errors pass through.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return malformed("body ends in the middle of the JSON")
	}
	return err
}

func quoteByte(c byte) string {
	if c >= ' ' && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// stringReader reads the contents of a JSON string whose opening quote was
// consumed, undoing escapes, and returns io.EOF after the closing quote.
type stringReader struct {
	br   *bufio.Reader
	done bool
	pend [utf8.UTFMax]byte // an escaped rune's bytes not yet returned
	np   int               // len of pend in use
	ip   int               // next byte of pend to return
	err  error
}

func (s *stringReader) reset() { *s = stringReader{br: s.br} }

func (s *stringReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := 0
	for n < len(p) {
		if s.ip < s.np {
			k := copy(p[n:], s.pend[s.ip:s.np])
			s.ip += k
			n += k
			continue
		}
		if s.done {
			break
		}
		if _, err := s.br.Peek(1); err != nil {
			s.err = unexpectedEOF(err)
			return n, s.err
		}
		chunk, _ := s.br.Peek(s.br.Buffered())
		lim := min(len(chunk), len(p)-n)
		i := 0
		for i < lim {
			if c := chunk[i]; c == '"' || c == '\\' || c < ' ' {
				break
			}
			i++
		}
		n += copy(p[n:], chunk[:i])
		s.br.Discard(i)
		if i == lim {
			continue
		}
		switch c := chunk[i]; c {
		case '"':
			s.br.Discard(1)
			s.done = true
		case '\\':
			if err := s.escape(); err != nil {
				s.err = err
				return n, err
			}
		default:
			s.err = malformed("control character %s in a string", quoteByte(c))
			return n, s.err
		}
	}
	if n == 0 && s.done {
		return 0, io.EOF
	}
	return n, nil
}

// escape decodes one escape sequence at the reader into pend.
func (s *stringReader) escape() error {
	b, err := s.br.Peek(2)
	if err != nil {
		return unexpectedEOF(err)
	}
	var r rune
	switch b[1] {
	case '"', '\\', '/':
		r = rune(b[1])
	case 'b':
		r = '\b'
	case 'f':
		r = '\f'
	case 'n':
		r = '\n'
	case 'r':
		r = '\r'
	case 't':
		r = '\t'
	case 'u':
		var ok bool
		if r, ok = s.hex4(); !ok {
			return malformed(`invalid \u escape`)
		}
		if utf16.IsSurrogate(r) {
			// Like encoding/json: a valid pair makes one rune, anything
			// else is U+FFFD and the next escape is read on its own.
			r2 := utf8.RuneError
			if b, err := s.br.Peek(2); err == nil && b[0] == '\\' && b[1] == 'u' {
				if lo, ok := s.peekHex4(); ok {
					if r2 = utf16.DecodeRune(r, lo); r2 != utf8.RuneError {
						s.br.Discard(6)
					}
				}
			}
			r = r2
		}
		s.np, s.ip = utf8.EncodeRune(s.pend[:], r), 0
		return nil
	default:
		return malformed("invalid escape %s", quoteByte(b[1]))
	}
	s.br.Discard(2)
	s.pend[0] = byte(r)
	s.np, s.ip = 1, 0
	return nil
}

// hex4 consumes `\uXXXX` and returns its code unit.
func (s *stringReader) hex4() (rune, bool) {
	r, ok := s.peekHex4()
	if ok {
		s.br.Discard(6)
	}
	return r, ok
}

// peekHex4 decodes `\uXXXX` at the reader without consuming it.
func (s *stringReader) peekHex4() (rune, bool) {
	b, err := s.br.Peek(6)
	if err != nil {
		return 0, false
	}
	var r rune
	for _, c := range b[2:] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
