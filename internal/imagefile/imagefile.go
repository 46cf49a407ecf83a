// Package imagefile tells the format and dimensions of a PNG, JPEG or WebP
// file from its first bytes, without decoding the image (Read, Stat: what
// the manifest checks of an input before anything is paid, and what the
// sandbox checks of an upload), and confirms that a whole file is one
// complete, valid image (Verify: what an answer's image must be before it
// counts).
package imagefile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // registers DecodeConfig for JPEG
	_ "image/png"  // registers DecodeConfig for PNG
	"io"
	"os"
)

// Format is an image file format, named as the API's output_format names it.
type Format string

// The formats the Stable Image services take and return.
const (
	PNG  Format = "png"
	JPEG Format = "jpeg"
	WebP Format = "webp"
)

// Ext returns the file extension of f with its dot: ".png", ".jpg" or ".webp".
func (f Format) Ext() string {
	if f == JPEG {
		return ".jpg"
	}
	return "." + string(f)
}

// ContentType returns the media type of f, e.g. "image/png".
func (f Format) ContentType() string { return "image/" + string(f) }

// Info is what the header of an image file tells.
type Info struct {
	Format        Format
	Width, Height int // pixels
}

// ErrFormat reports data that is not a PNG, JPEG or WebP image.
var ErrFormat = errors.New("not a PNG, JPEG or WebP image")

// Sniff returns the format of an image from its first bytes (12 are enough),
// or "" when they are none of PNG, JPEG and WebP.
func Sniff(head []byte) Format {
	switch {
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return PNG
	case bytes.HasPrefix(head, []byte{0xff, 0xd8, 0xff}):
		return JPEG
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return WebP
	}
	return ""
}

// Read reads the header of an image from r and returns its format and
// dimensions. It reads no more than the header needs (for JPEG, up to the
// first frame header). An unknown format wraps ErrFormat.
func Read(r io.Reader) (Info, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(12)
	f := Sniff(head)
	switch f {
	case "":
		return Info{}, ErrFormat
	case WebP:
		w, h, err := webpSize(br)
		if err != nil {
			return Info{}, fmt.Errorf("webp: %w", err)
		}
		return Info{Format: WebP, Width: w, Height: h}, nil
	}
	cfg, _, err := image.DecodeConfig(br)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", f, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return Info{}, fmt.Errorf("%s: no pixels (%d×%d)", f, cfg.Width, cfg.Height)
	}
	return Info{Format: f, Width: cfg.Width, Height: cfg.Height}, nil
}

// Stat opens the file at path, which must be a regular file, and returns
// its header's Info and its size in bytes.
func Stat(path string) (Info, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Info{}, 0, err
	}
	if !st.Mode().IsRegular() {
		return Info{}, 0, fmt.Errorf("%s is not a regular file", path)
	}
	info, err := Read(f)
	if err != nil {
		return Info{}, 0, err
	}
	return info, st.Size(), nil
}

// webpSize reads the canvas size of a WebP file: from the VP8X, VP8L or
// VP8 chunk that follows the RIFF header (RFC 9649).
func webpSize(r io.Reader) (w, h int, err error) {
	var hdr [30]byte // RIFF header (12), chunk header (8), first 10 bytes of the chunk
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, fmt.Errorf("truncated header: %w", err)
	}
	return webpCanvas(string(hdr[12:16]), hdr[20:])
}

// webpCanvas reads the canvas size from the first bytes (up to 10) of a
// WebP file's first chunk, of type chunk.
func webpCanvas(chunk string, data []byte) (w, h int, err error) {
	need := map[string]int{"VP8X": 10, "VP8L": 5, "VP8 ": 10}[chunk]
	if need > 0 && len(data) < need {
		return 0, 0, fmt.Errorf("first chunk %q of %d bytes is too short", chunk, len(data))
	}
	switch chunk {
	case "VP8X":
		// flags (1), reserved (3), canvas width − 1 (24 bits), height − 1 (24 bits)
		w = 1 + int(uint32(data[4])|uint32(data[5])<<8|uint32(data[6])<<16)
		h = 1 + int(uint32(data[7])|uint32(data[8])<<8|uint32(data[9])<<16)
	case "VP8L":
		if data[0] != 0x2f {
			return 0, 0, errors.New("bad VP8L signature")
		}
		bits := binary.LittleEndian.Uint32(data[1:5])
		w = 1 + int(bits&0x3fff)
		h = 1 + int(bits>>14&0x3fff)
	case "VP8 ":
		// frame tag (3), start code 9d 01 2a, then 14-bit width and height
		if data[3] != 0x9d || data[4] != 0x01 || data[5] != 0x2a {
			return 0, 0, errors.New("bad VP8 start code")
		}
		w = int(binary.LittleEndian.Uint16(data[6:8]) & 0x3fff)
		h = int(binary.LittleEndian.Uint16(data[8:10]) & 0x3fff)
	default:
		return 0, 0, fmt.Errorf("unknown first chunk %q", chunk)
	}
	if w == 0 || h == 0 {
		return 0, 0, fmt.Errorf("no pixels (%d×%d)", w, h)
	}
	return w, h, nil
}
