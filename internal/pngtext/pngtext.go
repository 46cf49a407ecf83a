// Package pngtext adds tEXt chunks to a PNG as it streams past and reads
// them back.
package pngtext

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf8"
)

// signature is the eight bytes every PNG file starts with.
var signature = []byte("\x89PNG\r\n\x1a\n")

// ErrNotPNG reports input that does not start with the PNG signature.
var ErrNotPNG = errors.New("not a PNG stream")

// maxKeyword is the longest tEXt keyword the PNG specification allows, in bytes.
const maxKeyword = 79

// Writer passes a PNG stream through to an underlying writer and inserts
// one tEXt chunk just before the IEND chunk. It holds back only the bytes
// it cannot forward yet: an incomplete chunk header, and the IEND chunk
// itself until Close. The text may be set at any time before Close, so a
// value known only after the image bytes (such as the seed) can still go in.
// A Writer is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	keyword string
	text    string
	hasText bool

	sigLeft int    // signature bytes still to check
	header  []byte // bytes of the current chunk header seen so far (< 8)
	left    int64  // bytes of the current chunk (data and CRC) still to pass through
	iend    []byte // the held-back IEND chunk, once its header was seen
	err     error  // sticky error
	closed  bool
}

// NewWriter returns a Writer that forwards to w and inserts a tEXt chunk
// with the given keyword (1–79 Latin-1 characters, no NUL) once SetText was
// called. Closing the Writer does not close w.
func NewWriter(w io.Writer, keyword string) *Writer {
	return &Writer{w: w, keyword: keyword, sigLeft: len(signature), header: make([]byte, 0, 8)}
}

// SetText sets the text of the chunk; it may be called any time before
// Close. Characters outside Latin-1 are written as '?'. Without a call to
// SetText no chunk is added.
func (w *Writer) SetText(text string) {
	w.text, w.hasText = text, true
}

// Write forwards p, holding back an incomplete chunk header and the IEND
// chunk. It reports an error for input that is not a PNG chunk stream.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("pngtext: write after close")
	}
	n := len(p)
	if err := w.write(p); err != nil {
		w.err = err
		return 0, err
	}
	return n, nil
}

func (w *Writer) write(p []byte) error {
	for len(p) > 0 {
		switch {
		case w.sigLeft > 0:
			k := min(w.sigLeft, len(p))
			off := len(signature) - w.sigLeft
			if !bytes.Equal(p[:k], signature[off:off+k]) {
				return ErrNotPNG
			}
			if _, err := w.w.Write(p[:k]); err != nil {
				return err
			}
			w.sigLeft -= k
			p = p[k:]
		case w.iend != nil:
			// everything after the IEND header belongs to IEND (its CRC)
			if len(w.iend)+len(p) > 12 {
				return errors.New("pngtext: data after IEND chunk")
			}
			w.iend = append(w.iend, p...)
			p = nil
		case w.left > 0:
			k := int(min(w.left, int64(len(p))))
			if _, err := w.w.Write(p[:k]); err != nil {
				return err
			}
			w.left -= int64(k)
			p = p[k:]
		default:
			k := min(8-len(w.header), len(p))
			w.header = append(w.header, p[:k]...)
			p = p[k:]
			if len(w.header) < 8 {
				continue
			}
			length := binary.BigEndian.Uint32(w.header[:4])
			if length > 1<<31-1 {
				return errors.New("pngtext: chunk length out of range")
			}
			if string(w.header[4:8]) == "IEND" {
				w.iend = append(make([]byte, 0, 12), w.header...)
			} else {
				if _, err := w.w.Write(w.header); err != nil {
					return err
				}
				w.left = int64(length) + 4
			}
			w.header = w.header[:0]
		}
	}
	return nil
}

// Close writes the tEXt chunk (when text was set) and the held-back IEND
// chunk. It reports an error if the stream ended before a complete IEND
// chunk. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if len(w.iend) != 12 {
		w.err = errors.New("pngtext: truncated PNG: no complete IEND chunk")
		return w.err
	}
	if w.hasText {
		chunk, err := Chunk(w.keyword, w.text)
		if err != nil {
			w.err = err
			return err
		}
		if _, err := w.w.Write(chunk); err != nil {
			w.err = err
			return err
		}
	}
	if _, err := w.w.Write(w.iend); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Chunk returns a complete tEXt chunk (length, type, data, CRC) holding
// keyword and text, both converted to Latin-1 ('?' for other characters).
func Chunk(keyword, text string) ([]byte, error) {
	key := latin1(keyword)
	if len(key) == 0 || len(key) > maxKeyword || bytes.IndexByte(key, 0) >= 0 {
		return nil, fmt.Errorf("pngtext: keyword %q must be 1-%d Latin-1 characters without NUL", keyword, maxKeyword)
	}
	data := append(append(key, 0), latin1(strings.ReplaceAll(text, "\x00", "?"))...)
	chunk := make([]byte, 0, 12+len(data))
	chunk = binary.BigEndian.AppendUint32(chunk, uint32(len(data)))
	chunk = append(chunk, "tEXt"...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	return chunk, nil
}

func latin1(s string) []byte {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff || r == utf8.RuneError {
			r = '?'
		}
		b = append(b, byte(r))
	}
	return b
}

// Text is one tEXt chunk, decoded from Latin-1.
type Text struct {
	Keyword string
	Text    string
}

// maxChunk bounds the chunk size ReadText accepts, in bytes.
const maxChunk = 64 << 20

// ReadText reads a PNG stream to its IEND chunk and returns its tEXt
// chunks in file order. It checks the signature and every chunk's CRC.
func ReadText(r io.Reader) ([]Text, error) {
	sig := make([]byte, len(signature))
	if _, err := io.ReadFull(r, sig); err != nil || !bytes.Equal(sig, signature) {
		return nil, ErrNotPNG
	}
	var texts []Text
	header := make([]byte, 8)
	for {
		if _, err := io.ReadFull(r, header); err != nil {
			return nil, fmt.Errorf("pngtext: read chunk header: %w", err)
		}
		length := binary.BigEndian.Uint32(header[:4])
		typ := string(header[4:8])
		crc := crc32.NewIEEE()
		crc.Write(header[4:8])
		var data []byte
		if typ == "tEXt" {
			if length > maxChunk {
				return nil, fmt.Errorf("pngtext: tEXt chunk of %d bytes is too large", length)
			}
			data = make([]byte, length)
			if _, err := io.ReadFull(r, data); err != nil {
				return nil, fmt.Errorf("pngtext: read tEXt chunk: %w", err)
			}
			crc.Write(data)
		} else if _, err := io.CopyN(crc, r, int64(length)); err != nil {
			return nil, fmt.Errorf("pngtext: read %s chunk: %w", typ, err)
		}
		sum := make([]byte, 4)
		if _, err := io.ReadFull(r, sum); err != nil {
			return nil, fmt.Errorf("pngtext: read %s CRC: %w", typ, err)
		}
		if binary.BigEndian.Uint32(sum) != crc.Sum32() {
			return nil, fmt.Errorf("pngtext: %s chunk: CRC mismatch", typ)
		}
		switch typ {
		case "tEXt":
			key, val, ok := bytes.Cut(data, []byte{0})
			if !ok {
				return nil, errors.New("pngtext: tEXt chunk without keyword separator")
			}
			texts = append(texts, Text{Keyword: fromLatin1(key), Text: fromLatin1(val)})
		case "IEND":
			return texts, nil
		}
	}
}

func fromLatin1(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}
