package runner

// Every image a run writes carries a record: its job's id, the journal Key
// of the request that made it and which of the job's images it is, so that
// a run whose journal lost the job (deleted, cut short, damaged) recognises
// the image on disk and does not buy it again (see recoverOut). Where the
// record goes depends on the format:
//
//   - PNG: a tEXt chunk with keyword "batch-key" after "parameters", added
//     before IEND once the seed is known.
//   - JPEG: a COM segment right after the SOI marker (the file's first two
//     bytes), added as the image streams in, before the answer's seed and
//     request id reach the sink: the record has neither, and an entry
//     rebuilt from it takes the job's fixed seed, or 0 when the API chose
//     it. Every decoder skips COM.
//   - WebP: a sidecar file beside the image, NAME.webp.batch.json, holding
//     the image's SHA-256 too, so a sidecar left beside another image (a
//     crash between the two renames) matches nothing. A chunk inside the
//     file was weighed and left out: unknown chunks are allowed only in
//     the extended format (VP8X), so a simple lossy or lossless file would
//     have to be converted, its canvas size parsed from the bitstream and
//     the RIFF size rewritten; the sidecar keeps the API's bytes as they
//     came. It is written atomically before the image is renamed.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/outdir"
	"github.com/batch-tool/batch/internal/pngtext"
	"github.com/batch-tool/batch/internal/stability"
)

// recordKeyword is the PNG tEXt keyword of an image's record.
const recordKeyword = "batch-key"

// sidecarExt ends the name of a WebP image's record file: NAME.webp.batch.json.
const sidecarExt = ".batch.json"

// maxRecord bounds a record's size in bytes: a COM segment holds at most
// 65533, and a record read back larger than this is not one of ours.
const maxRecord = 16 << 10

// imageRecord is what an image file says about itself.
type imageRecord struct {
	ID    string `json:"id"`    // the job's id
	Key   string `json:"key"`   // the journal Key of the request that made the image
	Image int    `json:"image"` // which of the job's images, from 1
	// Seed is the seed the API used, and RequestID the answer's
	// x-request-id; nil and "" in a JPEG, whose record is written before
	// they are known.
	Seed      *uint32 `json:"seed,omitempty"`
	RequestID string  `json:"request_id,omitempty"`
	// SHA256 is the image file's SHA-256 (hex); set in a WebP sidecar only.
	SHA256 string `json:"sha256,omitempty"`
}

// encode returns r as JSON in ASCII: PNG text is Latin-1, and a JPEG
// comment is best kept plain.
func (r imageRecord) encode() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode image record: %w", err)
	}
	if len(b) > maxRecord {
		return nil, fmt.Errorf("image record of job %s is %d bytes, more than %d", r.ID, len(b), maxRecord)
	}
	return asciiJSON(b), nil
}

// asciiJSON escapes every non-ASCII character of valid JSON as \uXXXX
// (they occur only inside strings).
func asciiJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		if r < utf8.RuneSelf {
			out = append(out, byte(r))
			continue
		}
		for _, u := range utf16.AppendRune(nil, r) {
			out = fmt.Appendf(out, `\u%04x`, u)
		}
	}
	return out
}

// decodeRecord reads a record written by encode.
func decodeRecord(b []byte) (imageRecord, error) {
	var r imageRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return imageRecord{}, fmt.Errorf("image record: %w", err)
	}
	if r.ID == "" || r.Key == "" || r.Image < 1 {
		return imageRecord{}, errors.New("image record without its job, key or image number")
	}
	return r, nil
}

// imageMark puts its record into one image of an attempt as the image
// streams to its temp file: see the comment at the top of this file.
type imageMark struct {
	format fileFormat
	rec    imageRecord
	png    *pngtext.Writer // PNG: adds the record chunk at Close
	jpeg   *comWriter      // JPEG: adds the record after SOI
}

// newImageMark returns the mark of image rec.Image and the writer the
// image's bytes go through, which passes them on to w.
func newImageMark(format fileFormat, rec imageRecord, w io.Writer) (*imageMark, io.Writer, error) {
	m := &imageMark{format: format, rec: rec}
	switch format.name {
	case "png":
		m.png = pngtext.NewWriter(w, recordKeyword)
		return m, m.png, nil
	case "jpeg":
		text, err := rec.encode()
		if err != nil {
			return nil, nil, err
		}
		m.jpeg = &comWriter{w: w, com: comSegment(text)}
		return m, m.jpeg, nil
	}
	return m, w, nil
}

// end completes the record once the image is whole: for a PNG it writes
// the record chunk and IEND. Call it after the parameters writer above it
// was closed.
func (m *imageMark) end(a stability.Artifact) error {
	seed := a.Seed
	m.rec.Seed, m.rec.RequestID = &seed, a.RequestID
	switch {
	case m.png != nil:
		text, err := m.rec.encode()
		if err != nil {
			return err
		}
		m.png.SetText(string(text))
		return m.png.Close()
	case m.jpeg != nil && m.jpeg.head < len(soi):
		return fmt.Errorf("%w: the image ended before its SOI marker", stability.ErrMalformedResponse)
	}
	return nil
}

// writeSidecar writes a WebP image's record, with the image's SHA-256,
// beside the image about to be renamed to rel (slash-separated, relative
// to d); for other formats it does nothing. The record's name is durable
// once the caller syncs its folder, as it does after the image's rename.
func (m *imageMark) writeSidecar(d *outdir.Dir, rel, sum string) error {
	if m.format.name != "webp" {
		return nil
	}
	rec := m.rec
	rec.SHA256 = sum
	text, err := rec.encode()
	if err != nil {
		return err
	}
	// Read only with its image, which is renamed into place after it.
	if err := d.PutFile(rel+sidecarExt, append(text, '\n')); err != nil {
		return fmt.Errorf("write image record: %w", err)
	}
	return nil
}

// soi is the marker every JPEG starts with.
var soi = []byte{0xFF, 0xD8}

// comSegment returns a JPEG COM segment holding text (at most 65533 bytes).
func comSegment(text []byte) []byte {
	seg := []byte{0xFF, 0xFE}
	seg = binary.BigEndian.AppendUint16(seg, uint16(len(text)+2))
	return append(seg, text...)
}

// comWriter passes a JPEG stream through to w and inserts a COM segment
// right after its SOI marker. A stream that does not start with SOI is an
// error (a malformed answer). Not safe for concurrent use.
type comWriter struct {
	w    io.Writer
	com  []byte
	head int // SOI bytes seen, up to 2
	err  error
}

func (c *comWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n := len(p)
	for c.head < len(soi) && len(p) > 0 {
		if p[0] != soi[c.head] {
			c.err = fmt.Errorf("%w: the image does not start with a JPEG SOI marker", stability.ErrMalformedResponse)
			return 0, c.err
		}
		c.head++
		p = p[1:]
		if c.head == len(soi) {
			if _, err := c.w.Write(append(append([]byte{}, soi...), c.com...)); err != nil {
				c.err = err
				return 0, err
			}
		}
	}
	if len(p) > 0 {
		if _, err := c.w.Write(p); err != nil {
			c.err = err
			return 0, err
		}
	}
	return n, nil
}

// readRecord reads the record of the image file rel (slash-separated,
// relative to d) stored as format, and the file's SHA-256 (hex). A file
// without a record, or with one that does not read, is an error.
func readRecord(d *outdir.Dir, rel string, format fileFormat) (imageRecord, string, error) {
	f, err := d.OpenFile(rel, os.O_RDONLY)
	if err != nil {
		return imageRecord{}, "", err
	}
	defer f.Close()
	h := sha256.New()
	r := io.TeeReader(f, h)
	var rec imageRecord
	switch format.name {
	case "png":
		rec, err = pngRecord(r)
	case "jpeg":
		rec, err = jpegRecord(r)
	default:
		rec, err = sidecarRecord(d, rel)
	}
	if err != nil {
		return imageRecord{}, "", fmt.Errorf("%s: %w", rel, err)
	}
	sum, err := finishHash(h, r)
	if err != nil {
		return imageRecord{}, "", fmt.Errorf("%s: %w", rel, err)
	}
	if rec.SHA256 != "" && rec.SHA256 != sum {
		return imageRecord{}, "", fmt.Errorf("%s: its record is another image's", rel)
	}
	return rec, sum, nil
}

// finishHash reads the rest of r (which feeds h) and returns h's sum.
func finishHash(h hash.Hash, r io.Reader) (string, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func pngRecord(r io.Reader) (imageRecord, error) {
	texts, err := pngtext.ReadText(r)
	if err != nil {
		return imageRecord{}, err
	}
	for _, t := range texts {
		if t.Keyword == recordKeyword {
			return decodeRecord([]byte(t.Text))
		}
	}
	return imageRecord{}, errors.New("no image record")
}

func jpegRecord(r io.Reader) (imageRecord, error) {
	var head [6]byte
	if _, err := io.ReadFull(r, head[:]); err != nil || !bytes.Equal(head[:2], soi) {
		return imageRecord{}, errors.New("not a JPEG file")
	}
	if head[2] != 0xFF || head[3] != 0xFE {
		return imageRecord{}, errors.New("no image record")
	}
	n := int(binary.BigEndian.Uint16(head[4:])) - 2
	if n < 0 || n > maxRecord {
		return imageRecord{}, errors.New("no image record")
	}
	text := make([]byte, n)
	if _, err := io.ReadFull(r, text); err != nil {
		return imageRecord{}, fmt.Errorf("read image record: %w", err)
	}
	return decodeRecord(text)
}

func sidecarRecord(d *outdir.Dir, rel string) (imageRecord, error) {
	f, err := d.OpenFile(rel+sidecarExt, os.O_RDONLY)
	if err != nil {
		return imageRecord{}, err
	}
	defer f.Close()
	text, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return imageRecord{}, fmt.Errorf("read image record: %w", err)
	}
	rec, err := decodeRecord(text)
	if err != nil {
		return imageRecord{}, err
	}
	if rec.SHA256 == "" {
		return imageRecord{}, errors.New("image record without the image's SHA-256")
	}
	return rec, nil
}
