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

// The API's JSON image answers carry megabytes of base64 in one string
// value. json.Decoder would hold each string, and so each image, whole;
// jsonLexer instead reads the body once through a small buffer and decodes
// base64 straight into a writer, so memory stays constant whatever the image
// size. No library streams a single huge string value, hence this by hand.
// The answer shapes built on it are in artifacts.go (v1) and imagejson.go
// (Stable Image).

const (
	scanBufferSize = 64 << 10 // bytes buffered from the body
	copyBufferSize = 32 << 10 // bytes of decoded image per write
	maxShortString = 64       // bytes kept of a key or short value
	maxNumberLen   = 64       // bytes of a number token
	maxDepth       = 64       // nesting of skipped values
)

// jsonLexer reads JSON tokens from a body. Errors about the body's syntax
// wrap ErrMalformedResponse and quote the body only through red; read
// errors are returned as they are.
type jsonLexer struct {
	red     *redactor
	bufs    *buffers
	br      *bufio.Reader // lent by bufs
	str     stringReader
	copyBuf *[copyBufferSize]byte // lent by bufs on the first image; nil until then
	short   [maxShortString]byte
}

// newJSONLexer returns a lexer reading r through a buffer lent by bufs;
// the caller must release it.
func newJSONLexer(r io.Reader, red *redactor, bufs *buffers) *jsonLexer {
	l := &jsonLexer{red: red, bufs: bufs, br: bufs.reader(r)}
	l.str.br = l.br
	return l
}

// release gives the lexer's buffers back; the lexer must not be used after.
func (l *jsonLexer) release() {
	l.bufs.putReader(l.br)
	l.br, l.str.br = nil, nil
	if l.copyBuf != nil {
		l.bufs.putCopyBuf(l.copyBuf)
		l.copyBuf = nil
	}
}

// malformed returns an error about the body's shape.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedResponse, fmt.Sprintf(format, args...))
}

// end checks that only whitespace follows the top-level value; reading to
// the end also drains the body, so the connection can be reused.
func (l *jsonLexer) end() error {
	c, err := l.skipSpace()
	if err == io.EOF {
		return nil
	}
	if err == nil {
		err = malformed("unexpected %s after the response object", quoteByte(c))
	}
	return err
}

// openString consumes the '"' that starts a string value; what names the
// value in the error when it is not a string.
func (l *jsonLexer) openString(what string) error {
	if c, err := l.peek(); err != nil {
		return err
	} else if c != '"' {
		return malformed("%s is not a string", what)
	}
	l.br.Discard(1)
	return nil
}

// base64To decodes the rest of a string, whose '"' is consumed, as standard
// base64 into w. It returns w's error as werr, for the caller to label, and
// the body's as err: a read error as it is, bad base64 or string syntax as
// ErrMalformedResponse naming what.
func (l *jsonLexer) base64To(w io.Writer, what string) (werr, err error) {
	if l.copyBuf == nil {
		l.copyBuf = l.bufs.copyBuf()
	}
	l.str.reset()
	dec := base64.NewDecoder(base64.StdEncoding, &l.str)
	for {
		n, rerr := dec.Read(l.copyBuf[:])
		if n > 0 {
			if _, err := w.Write(l.copyBuf[:n]); err != nil {
				return err, nil
			}
		}
		if rerr == io.EOF {
			return nil, nil
		}
		if _, ok := errors.AsType[base64.CorruptInputError](rerr); ok {
			return nil, malformed("%s: base64: %v", what, rerr)
		}
		if rerr == io.ErrUnexpectedEOF { // the string ended mid-quantum; a body that broke off is the caller's to tell
			return nil, malformed("%s: base64: length %% 4 is not 0", what)
		}
		if rerr != nil {
			return nil, rerr
		}
	}
}

// uint32Value reads a number that must be a whole number in [0, 2³²-1];
// what names it in the error.
func (l *jsonLexer) uint32Value(what string) (uint32, error) {
	tok, err := l.number()
	if err != nil {
		return 0, err
	}
	v, perr := strconv.ParseUint(string(tok), 10, 32)
	if perr != nil || tok[0] == '0' && len(tok) > 1 {
		return 0, malformed("%s %s is not a 32-bit unsigned integer", what, l.red.quote(string(tok)))
	}
	return uint32(v), nil
}

// shortStringValue reads a string value of at most maxShortString bytes
// (a longer one reads as empty); what names it in the error when the value
// is not a string. The result is valid until the next read.
func (l *jsonLexer) shortStringValue(what string) ([]byte, error) {
	if err := l.openString(what); err != nil {
		return nil, err
	}
	return l.shortString()
}

// members reads an object's members after its '{', calling fn with each key
// once the ':' is consumed; fn must consume the value.
func (l *jsonLexer) members(fn func(key []byte) error) error {
	c, err := l.peek()
	if err != nil {
		return err
	}
	if c == '}' {
		l.br.Discard(1)
		return nil
	}
	for {
		if err := l.expect('"'); err != nil {
			return err
		}
		key, err := l.shortString()
		if err != nil {
			return err
		}
		if err := l.expect(':'); err != nil {
			return err
		}
		if err := fn(key); err != nil {
			return err
		}
		c, err := l.next()
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
func (l *jsonLexer) skipValue(depth int) error {
	if depth > maxDepth {
		return malformed("nesting deeper than %d", maxDepth)
	}
	c, err := l.peek()
	if err != nil {
		return err
	}
	switch {
	case c == '"':
		l.br.Discard(1)
		l.str.reset()
		_, err := io.Copy(io.Discard, &l.str)
		return err
	case c == '{':
		l.br.Discard(1)
		return l.members(func([]byte) error { return l.skipValue(depth + 1) })
	case c == '[':
		l.br.Discard(1)
		if c, err := l.peek(); err != nil {
			return err
		} else if c == ']' {
			l.br.Discard(1)
			return nil
		}
		for {
			if err := l.skipValue(depth + 1); err != nil {
				return err
			}
			c, err := l.next()
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
		return l.literal("true")
	case c == 'f':
		return l.literal("false")
	case c == 'n':
		return l.literal("null")
	default:
		_, err := l.number()
		return err
	}
}

func (l *jsonLexer) literal(want string) error {
	got, err := l.br.Peek(len(want))
	if string(got) != want {
		if err != nil {
			return unexpectedEOF(err)
		}
		return malformed("invalid literal %q", got)
	}
	l.br.Discard(len(want))
	return nil
}

// number reads a JSON number token of at most maxNumberLen bytes.
func (l *jsonLexer) number() ([]byte, error) {
	if _, err := l.peek(); err != nil {
		return nil, err
	}
	n := 0
	for {
		c, err := l.br.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			l.br.UnreadByte()
			break
		}
		if n == len(l.short) {
			return nil, malformed("number longer than %d bytes", maxNumberLen)
		}
		l.short[n] = c
		n++
	}
	tok := l.short[:n]
	if !validNumber(tok) {
		if n == 0 {
			c, _ := l.br.Peek(1)
			return nil, malformed("unexpected %s where a value belongs", quoteByte(c[0]))
		}
		return nil, malformed("invalid number %s", l.red.quote(string(tok)))
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
func (l *jsonLexer) shortString() ([]byte, error) {
	l.str.reset()
	n := 0
	for {
		m, err := l.str.Read(l.short[n:])
		n += m
		if err == io.EOF {
			return l.short[:n], nil
		}
		if err != nil {
			return nil, err
		}
		if n == len(l.short) {
			if _, err := io.Copy(io.Discard, &l.str); err != nil {
				return nil, err
			}
			return l.short[:0], nil
		}
	}
}

// next skips whitespace and consumes one byte.
func (l *jsonLexer) next() (byte, error) {
	if _, err := l.peek(); err != nil {
		return 0, err
	}
	return l.br.ReadByte()
}

// expect consumes one byte after whitespace and checks it is want.
func (l *jsonLexer) expect(want byte) error {
	c, err := l.next()
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
func (l *jsonLexer) peek() (byte, error) {
	c, err := l.skipSpace()
	return c, unexpectedEOF(err)
}

// skipSpace skips whitespace and returns the next byte without consuming
// it, or io.EOF at the end of the body.
func (l *jsonLexer) skipSpace() (byte, error) {
	for {
		b, err := l.br.Peek(1)
		if err != nil {
			return 0, err
		}
		switch b[0] {
		case ' ', '\t', '\n', '\r':
			l.br.Discard(1)
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
