package imagefile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"image/jpeg"
	"io"
)

// MaxPixels is the most pixels (width × height) Verify accepts: 2²⁶, about
// 67 megapixels, four times the largest image the API returns (a 4× fast
// upscale of a megapixel), so that a header cannot make Verify decode
// gigabytes.
const MaxPixels = 1 << 26

// Verify reads all of r, which should be bounded (a file, a capped body),
// and confirms that it is one complete and valid PNG, JPEG or WebP image:
//
//   - PNG: the chunks in order (IHDR first, IEND last, nothing after it),
//     every CRC, and the whole compressed image: the zlib stream (with its
//     checksum) holds exactly the scanlines the header announces, each with
//     a valid filter byte. It is checked as it streams, with no pixel
//     buffer, which is what decoding checks of the data;
//   - JPEG: decoded in full with image/jpeg;
//   - WebP: the RIFF size equals the data's length, the chunks tile it
//     exactly, and the first chunk (VP8, VP8L or VP8X) gives the canvas
//     size; the bitstream itself is not decoded.
//
// It returns the format and dimensions. Data that is none of the three
// formats wraps ErrFormat; an image over MaxPixels is an error. r is read
// through a buffer: r itself when it is a *bufio.Reader (a caller checking
// many images can reuse one), else a new one.
func Verify(r io.Reader) (Info, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	head, _ := br.Peek(12)
	var info Info
	var err error
	switch f := Sniff(head); f {
	case PNG:
		info, err = verifyPNG(br)
	case JPEG:
		info, err = verifyJPEG(br)
	case WebP:
		info, err = verifyWebP(br)
	default:
		return Info{}, ErrFormat
	}
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", Sniff(head), err)
	}
	return info, nil
}

// checkPixels refuses an image without pixels or over MaxPixels.
func checkPixels(w, h int) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("no pixels (%d×%d)", w, h)
	}
	if int64(w)*int64(h) > MaxPixels {
		return fmt.Errorf("%d×%d is over the %d pixels checked", w, h, MaxPixels)
	}
	return nil
}

// unexpectedEOF turns the end of the data where more must follow into an
// error that says so.
func unexpectedEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("truncated")
	}
	return err
}

func verifyJPEG(r io.Reader) (Info, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Info{}, err
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return Info{}, err
	}
	if err := checkPixels(cfg.Width, cfg.Height); err != nil {
		return Info{}, err
	}
	if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
		return Info{}, unexpectedEOF(err)
	}
	return Info{Format: JPEG, Width: cfg.Width, Height: cfg.Height}, nil
}

// pngHeader is a PNG's IHDR.
type pngHeader struct {
	width, height       int
	depth, colorType    byte
	interlaced          bool
	channels            int  // samples per pixel
	needsPalette        bool // color type 3
	paletteAllowed      bool
	seenPalette, inIDAT bool
}

// pngChunks reads a PNG's chunks one by one, checking each CRC; its Read
// returns the data of consecutive IDAT chunks as one stream.
type pngChunks struct {
	r    io.Reader
	crc  hash.Hash32
	typ  string
	left uint32 // bytes of the current chunk's data not yet read
}

// next reads the header of the next chunk, after checking the CRC of the
// current one (whose data must be read).
func (c *pngChunks) next() error {
	var hdr [8]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return unexpectedEOF(err)
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n > 1<<31-1 {
		return errors.New("chunk length over 2³¹-1")
	}
	c.typ, c.left = string(hdr[4:]), n
	c.crc.Reset()
	c.crc.Write(hdr[4:])
	return nil
}

// skip reads the rest of the current chunk's data.
func (c *pngChunks) skip() error {
	n, err := io.CopyN(c.crc, c.r, int64(c.left))
	c.left -= uint32(n)
	return unexpectedEOF(err)
}

// data reads the whole of the current chunk's data, which must be small.
func (c *pngChunks) data() ([]byte, error) {
	b := make([]byte, c.left)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return nil, unexpectedEOF(err)
	}
	c.crc.Write(b)
	c.left = 0
	return b, nil
}

// end checks the current chunk's CRC; its data must be read.
func (c *pngChunks) end() error {
	var b [4]byte
	if _, err := io.ReadFull(c.r, b[:]); err != nil {
		return unexpectedEOF(err)
	}
	if binary.BigEndian.Uint32(b[:]) != c.crc.Sum32() {
		return fmt.Errorf("chunk %q: CRC mismatch", c.typ)
	}
	return nil
}

// Read reads the compressed image across IDAT chunks: at the end of one
// it checks the CRC and moves to the next if it is an IDAT, else it
// reports io.EOF and leaves that chunk current.
func (c *pngChunks) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.typ != "IDAT" {
			return 0, io.EOF
		}
		if err := c.end(); err != nil {
			return 0, err
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n, err := c.r.Read(p[:min(len(p), int(c.left))])
	c.crc.Write(p[:n])
	c.left -= uint32(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func verifyPNG(r *bufio.Reader) (Info, error) {
	if _, err := r.Discard(8); err != nil { // the signature, sniffed
		return Info{}, unexpectedEOF(err)
	}
	c := &pngChunks{r: r, crc: crc32.NewIEEE()}
	if err := c.next(); err != nil {
		return Info{}, err
	}
	if c.typ != "IHDR" || c.left != 13 {
		return Info{}, errors.New("no IHDR chunk first")
	}
	b, err := c.data()
	if err != nil {
		return Info{}, err
	}
	if err := c.end(); err != nil {
		return Info{}, err
	}
	h, err := parseIHDR(b)
	if err != nil {
		return Info{}, err
	}
	sawImage := false
	for {
		if err := c.next(); err != nil {
			return Info{}, err
		}
		switch c.typ {
		case "IHDR":
			return Info{}, errors.New("a second IHDR chunk")
		case "PLTE":
			if !h.paletteAllowed || h.seenPalette || sawImage {
				return Info{}, errors.New("a PLTE chunk where none may be")
			}
			if c.left == 0 || c.left%3 != 0 || c.left > 3*256 {
				return Info{}, fmt.Errorf("a PLTE chunk of %d bytes", c.left)
			}
			h.seenPalette = true
		case "IDAT":
			if sawImage {
				// Encoders may end with an empty IDAT; image/png ignores
				// any after the image, and so does Verify.
				break
			}
			if h.needsPalette && !h.seenPalette {
				return Info{}, errors.New("no PLTE chunk before the image data")
			}
			sawImage = true
			if err := checkScanlines(c, &h); err != nil {
				return Info{}, err
			}
			// The image's last IDAT is current and read: check its CRC.
			if err := c.end(); err != nil {
				return Info{}, err
			}
			continue
		case "IEND":
			if !sawImage {
				return Info{}, errors.New("no IDAT chunk")
			}
			if c.left != 0 {
				return Info{}, errors.New("an IEND chunk with data")
			}
			if err := c.end(); err != nil {
				return Info{}, err
			}
			if n, _ := r.Discard(1); n != 0 {
				return Info{}, errors.New("data after the IEND chunk")
			}
			return Info{Format: PNG, Width: h.width, Height: h.height}, nil
		}
		if err := c.skip(); err != nil {
			return Info{}, err
		}
		if err := c.end(); err != nil {
			return Info{}, err
		}
	}
}

func parseIHDR(b []byte) (pngHeader, error) {
	w, ht := binary.BigEndian.Uint32(b[0:4]), binary.BigEndian.Uint32(b[4:8])
	if w > 1<<31-1 || ht > 1<<31-1 {
		return pngHeader{}, errors.New("dimensions over 2³¹-1")
	}
	h := pngHeader{width: int(w), height: int(ht), depth: b[8], colorType: b[9], interlaced: b[12] == 1}
	if err := checkPixels(h.width, h.height); err != nil {
		return pngHeader{}, err
	}
	if b[10] != 0 || b[11] != 0 || b[12] > 1 {
		return pngHeader{}, errors.New("unknown compression, filter or interlace method")
	}
	depths := map[byte]string{0: "\x01\x02\x04\x08\x10", 2: "\x08\x10", 3: "\x01\x02\x04\x08", 4: "\x08\x10", 6: "\x08\x10"}
	ok, known := depths[h.colorType]
	if !known || bytes.IndexByte([]byte(ok), h.depth) < 0 {
		return pngHeader{}, fmt.Errorf("color type %d with bit depth %d", h.colorType, h.depth)
	}
	h.channels = map[byte]int{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[h.colorType]
	h.needsPalette = h.colorType == 3
	h.paletteAllowed = h.colorType == 2 || h.colorType == 3 || h.colorType == 6
	return h, nil
}

// adam7 are the Adam7 passes: x, y offsets and steps.
func adam7() [7][4]int {
	return [7][4]int{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}
}

// checkScanlines decompresses the image data from the IDAT chunks and
// checks that it holds exactly the scanlines h announces, each starting
// with a filter type of 0 to 4, and that the zlib stream ends there with a
// good checksum and that nothing follows it in the chunk.
func checkScanlines(c *pngChunks, h *pngHeader) error {
	// flate reads exactly its stream from an io.ByteReader; what the
	// buffer read ahead of it is left in the buffer, so bytes after the
	// stream are seen.
	buf := bufio.NewReader(c)
	zr, err := newZlibReader(buf)
	if err != nil {
		return fmt.Errorf("image data: %w", unexpectedEOF(err))
	}
	bitsPP := int64(h.channels) * int64(h.depth)
	passes := [][4]int{{0, 0, 1, 1}}
	if h.interlaced {
		p := adam7()
		passes = p[:]
	}
	var filter [1]byte
	for _, p := range passes {
		pw := (h.width - p[0] + p[2] - 1) / p[2]
		ph := (h.height - p[1] + p[3] - 1) / p[3]
		if pw <= 0 || ph <= 0 {
			continue
		}
		rowBytes := (int64(pw)*bitsPP + 7) / 8
		for range ph {
			if _, err := io.ReadFull(zr, filter[:]); err != nil {
				return fmt.Errorf("image data: %w", unexpectedEOF(err))
			}
			if filter[0] > 4 {
				return fmt.Errorf("image data: filter type %d", filter[0])
			}
			if n, err := io.CopyN(io.Discard, zr, rowBytes); err != nil {
				if n < rowBytes && (err == io.EOF || err == io.ErrUnexpectedEOF) {
					return errors.New("image data: truncated")
				}
				return fmt.Errorf("image data: %w", err)
			}
		}
	}
	// Reading on checks the zlib checksum; any byte more is too much.
	n, err := zr.Read(filter[:])
	for n == 0 && err == nil {
		n, err = zr.Read(filter[:])
	}
	switch {
	case n != 0:
		return errors.New("image data: more than the scanlines")
	case err != io.EOF:
		return fmt.Errorf("image data: %w", unexpectedEOF(err))
	case buf.Buffered() != 0 || c.left != 0:
		return errors.New("image data: bytes after the zlib stream")
	}
	return nil
}

func verifyWebP(r io.Reader) (Info, error) {
	var riff [12]byte
	if _, err := io.ReadFull(r, riff[:]); err != nil {
		return Info{}, unexpectedEOF(err)
	}
	size := int64(binary.LittleEndian.Uint32(riff[4:8])) // bytes after the size field
	left := size - 4                                     // after "WEBP"
	var info Info
	first, image := true, false
	for left > 0 {
		var hdr [8]byte
		if left < 8 {
			return Info{}, errors.New("RIFF size ends inside a chunk header")
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return Info{}, unexpectedEOF(err)
		}
		typ, n := string(hdr[:4]), int64(binary.LittleEndian.Uint32(hdr[4:]))
		padded := n + n%2
		left -= 8
		if padded > left {
			return Info{}, fmt.Errorf("chunk %q of %d bytes goes past the RIFF size", typ, n)
		}
		read := int64(0)
		if first {
			var head [10]byte
			k := min(n, int64(len(head)))
			if _, err := io.ReadFull(r, head[:k]); err != nil {
				return Info{}, unexpectedEOF(err)
			}
			read = k
			w, h, err := webpCanvas(typ, head[:k])
			if err != nil {
				return Info{}, err
			}
			if err := checkPixels(w, h); err != nil {
				return Info{}, err
			}
			info = Info{Format: WebP, Width: w, Height: h}
			first = false
		}
		switch typ {
		case "VP8 ", "VP8L", "ANMF":
			image = true
		}
		if _, err := io.CopyN(io.Discard, r, padded-read); err != nil {
			return Info{}, unexpectedEOF(err)
		}
		left -= padded
	}
	switch {
	case first:
		return Info{}, errors.New("no chunks")
	case !image:
		return Info{}, errors.New("no image chunk")
	}
	if n, _ := io.CopyN(io.Discard, r, 1); n != 0 {
		return Info{}, fmt.Errorf("data after the RIFF size of %d bytes", size)
	}
	return info, nil
}
