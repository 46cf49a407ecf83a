package stability

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// pieceLen is the length, in bytes, of the smallest piece of the API key
// that is scrubbed from server values: every run of at least pieceLen
// bytes of the key is.
const pieceLen = 8

// maxQuoted is the most bytes of a server value an error quotes.
const maxQuoted = 64

// redacted replaces what is scrubbed.
const redacted = "[redacted]"

// redactor scrubs the API key from what a server sends. A server that
// echoes the Authorization header into a header, a JSON field or an error
// body must not get the key, or a piece of it, into an error, a journal or
// a report, so every server value passes through it before it is kept,
// quoted or returned. It is immutable and safe for concurrent use.
type redactor struct {
	key string
	// pieces holds every pieceLen-byte substring of the key; any longer
	// run of the key is covered by them. Nil for a key shorter than
	// pieceLen, which is then scrubbed whole.
	pieces map[string]struct{}
}

func newRedactor(key string) *redactor {
	r := &redactor{key: key}
	if len(key) >= pieceLen {
		r.pieces = make(map[string]struct{}, len(key)-pieceLen+1)
		for i := 0; i+pieceLen <= len(key); i++ {
			r.pieces[key[i:i+pieceLen]] = struct{}{}
		}
	}
	return r
}

// scrub replaces every run of s that is a piece of the key (pieceLen bytes
// or more of it, or the whole of a shorter key) with "[redacted]".
func (r *redactor) scrub(s string) string {
	if r.key == "" {
		return s
	}
	if r.pieces == nil {
		return strings.ReplaceAll(s, r.key, redacted)
	}
	// mark[i] is set when byte i is inside some piece; a run of the key of
	// any length ≥ pieceLen is the union of its pieces.
	var mark []bool
	for i := 0; i+pieceLen <= len(s); i++ {
		if _, ok := r.pieces[s[i:i+pieceLen]]; ok {
			if mark == nil {
				mark = make([]bool, len(s))
			}
			for j := i; j < i+pieceLen; j++ {
				mark[j] = true
			}
		}
	}
	if mark == nil {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if !mark[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString(redacted)
		for i < len(s) && mark[i] {
			i++
		}
	}
	return b.String()
}

// leaks reports whether s holds a piece of the key: a value that cannot be
// scrubbed without changing what it means (an id, a number) is then
// refused or dropped.
func (r *redactor) leaks(s string) bool {
	return r.key != "" && r.scrub(s) != s
}

// clean scrubs s of the key, collapses its whitespace (scrubbing again, as
// collapsing may join what a server split), and keeps at most limit bytes,
// cut at a rune boundary with "…" added.
func (r *redactor) clean(s string, limit int) string {
	s = r.scrub(strings.Join(strings.Fields(r.scrub(s)), " "))
	if len(s) > limit {
		i := limit
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i] + "…"
	}
	return s
}

// quote returns s cleaned and cut to maxQuoted bytes, as a Go string
// literal: the form in which errors show a server value.
func (r *redactor) quote(s string) string {
	return strconv.Quote(r.clean(s, maxQuoted))
}

// redactedError is an error whose text carried a piece of the key: its
// text is scrubbed. It deliberately does not unwrap, so that no caller can
// reach the original text.
type redactedError struct{ msg string }

func (e *redactedError) Error() string { return e.msg }

// scrubError returns err when its text holds no piece of the key, else an
// error with the scrubbed text (at most limit bytes).
func (r *redactor) scrubError(err error, limit int) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if !r.leaks(msg) && len(msg) <= limit {
		return err
	}
	return &redactedError{msg: r.clean(msg, limit)}
}
