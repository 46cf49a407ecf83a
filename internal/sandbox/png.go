package sandbox

import (
	"encoding/binary"
	"hash/crc32"
	"hash/fnv"
	"image"
	"math"
	"math/rand/v2"
)

// The sandbox draws each image as a mosaic of cell×cell blocks: a smooth
// two-axis gradient with a few flat discs and rectangles on top. Every pixel
// row is stored with PNG's Up filter, so the rows inside a block row are all
// zeros and the first row of a block row is a handful of runs of one repeated
// pixel. The encoder below writes those runs straight into a fixed-Huffman
// deflate stream as back-references, and keeps the zlib Adler-32 checksum in
// closed form, so an image never exists as raw pixels and a 1024×1024 PNG
// costs a fraction of a millisecond.

// cell is the side of a mosaic block in pixels.
const cell = 4

// shape is a flat-coloured disc or rectangle, in cell coordinates.
type shape struct {
	disc      bool
	cx, cy, r float64 // disc centre and radius
	x0, y0    int     // rectangle corners, inclusive-exclusive
	x1, y1    int
	rgb       [3]uint8
}

// picture is the recipe of one image: everything renderPNG needs.
type picture struct {
	width, height int // pixels
	base          [3]int
	gx, gy        [3]int // gradient amplitude across the image, per channel
	shapes        []shape
}

// newPicture derives a picture from the prompt text and seed. A filtered
// picture keeps the gradient and drops the shapes, like a heavy blur.
func newPicture(prompt string, seed uint32, width, height int, filtered bool) picture {
	h := fnv.New64a()
	h.Write([]byte(prompt))
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], seed)
	h.Write(b[:])
	r := rand.New(rand.NewPCG(h.Sum64(), uint64(seed)))

	p := picture{width: width, height: height}
	for c := range 3 {
		p.base[c] = 70 + r.IntN(116) // 70..185, leaves room for ±70 of gradient
		p.gx[c] = r.IntN(141) - 70
		p.gy[c] = r.IntN(141) - 70
	}
	// Keep every channel inside 0..255 at all four corners.
	for c := range 3 {
		lo := p.base[c] + min(0, p.gx[c]) + min(0, p.gy[c])
		hi := p.base[c] + max(0, p.gx[c]) + max(0, p.gy[c])
		if lo < 0 {
			p.base[c] -= lo
		}
		if hi > 255 {
			p.base[c] -= hi - 255
		}
	}
	if filtered {
		return p
	}
	cw, ch := cellsOf(width), cellsOf(height)
	n := 3 + r.IntN(4)
	for range n {
		s := shape{rgb: [3]uint8{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256))}}
		if r.IntN(2) == 0 {
			s.disc = true
			s.r = float64(min(cw, ch)) * (0.06 + 0.16*r.Float64())
			s.cx = float64(cw) * r.Float64()
			s.cy = float64(ch) * r.Float64()
		} else {
			s.x0 = r.IntN(cw)
			s.y0 = r.IntN(ch)
			s.x1 = min(cw, s.x0+1+r.IntN(max(1, cw/3)))
			s.y1 = min(ch, s.y0+1+r.IntN(max(1, ch/3)))
		}
		p.shapes = append(p.shapes, s)
	}
	return p
}

func cellsOf(pixels int) int { return (pixels + cell - 1) / cell }

// rgba draws the picture as an opaque RGBA image, for encoders that take an
// image.Image.
func (p *picture) rgba() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, p.width, p.height))
	cells := make([]byte, 3*cellsOf(p.width))
	for y := range p.height {
		row := img.Pix[y*img.Stride : y*img.Stride+4*p.width]
		if y%cell != 0 { // the rows of a cell row are alike
			copy(row, img.Pix[(y-1)*img.Stride:])
			continue
		}
		p.row(cells, y/cell)
		for x := range p.width {
			c := cells[3*(x/cell):]
			row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = c[0], c[1], c[2], 0xff
		}
	}
	return img
}

// row fills dst (3 bytes per cell) with the colours of cell row cy.
func (p *picture) row(dst []byte, cy int) {
	cw, ch := cellsOf(p.width), cellsOf(p.height)
	var yc [3]int
	for c := range 3 {
		yc[c] = p.base[c] + p.gy[c]*cy/max(1, ch-1)
	}
	for cx := range cw {
		for c := range 3 {
			dst[3*cx+c] = uint8(yc[c] + p.gx[c]*cx/max(1, cw-1))
		}
	}
	for _, s := range p.shapes {
		x0, x1 := s.x0, s.x1
		if s.disc {
			dy := float64(cy) + 0.5 - s.cy
			if math.Abs(dy) >= s.r {
				continue
			}
			half := math.Sqrt(s.r*s.r - dy*dy)
			x0 = max(0, int(math.Round(s.cx-half)))
			x1 = min(cw, int(math.Round(s.cx+half)))
		} else if cy < s.y0 || cy >= s.y1 {
			continue
		}
		for cx := x0; cx < x1; cx++ {
			copy(dst[3*cx:3*cx+3], s.rgb[:])
		}
	}
}

// renderPNG encodes the picture as an 8-bit RGB PNG.
func renderPNG(p picture) []byte {
	w, h := p.width, p.height
	cw, ch := cellsOf(w), cellsOf(h)
	rowLen := 1 + 3*w // filter byte and pixels

	out := make([]byte, 0, 8+25+12+64*ch+12)
	out = append(out, "\x89PNG\r\n\x1a\n"...)
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, 2 // 8 bits per sample, RGB
	out = appendChunk(out, "IHDR", ihdr[:])

	// IDAT: reserve the length, write the data, then patch the length.
	start := len(out)
	out = append(out, 0, 0, 0, 0, 'I', 'D', 'A', 'T')
	z := deflater{bitWriter: bitWriter{out: out}, adler: adler{s1: 1}} // Adler-32 starts at 1
	z.out = append(z.out, 0x78, 0x01)                                  // zlib: deflate, 32 KiB window, no dictionary
	z.bits(1, 1)                                                       // BFINAL
	z.bits(1, 2)                                                       // BTYPE 01: fixed Huffman codes

	prev := make([]byte, 3*cw) // cell row above; zeros above the first row
	cur := make([]byte, 3*cw)
	for cy := range ch {
		p.row(cur, cy)
		z.diffRow(cur, prev, w)
		rows := min(cell, h-cy*cell) - 1
		for range rows {
			z.zeroRow(rowLen)
		}
		prev, cur = cur, prev
	}
	z.symbol(256) // end of block
	z.flush()
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], z.adler.sum())
	out = append(z.out, sum[:]...)

	binary.BigEndian.PutUint32(out[start:], uint32(len(out)-start-8))
	out = binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(out[start+4:]))
	return appendChunk(out, "IEND", nil)
}

func appendChunk(out []byte, typ string, data []byte) []byte {
	out = binary.BigEndian.AppendUint32(out, uint32(len(data)))
	start := len(out)
	out = append(out, typ...)
	out = append(out, data...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(out[start:]))
}

// bitWriter packs bits into bytes least significant bit first, the order
// of both deflate and WebP lossless; prefix codes go in bit-reversed.
type bitWriter struct {
	out []byte
	acc uint64 // pending bits, lowest first
	n   uint   // number of pending bits, < 8 between calls
}

// bits writes the low n bits of v (n ≤ 56).
func (b *bitWriter) bits(v uint64, n uint) {
	b.acc |= v << b.n
	b.n += n
	for b.n >= 8 {
		b.out = append(b.out, byte(b.acc))
		b.acc >>= 8
		b.n -= 8
	}
}

// code writes a prefix code.
func (b *bitWriter) code(c huff) { b.bits(uint64(c.code), uint(c.len)) }

// flush writes the pending bits, padded with zeros to a whole byte.
func (b *bitWriter) flush() {
	if b.n > 0 {
		b.out = append(b.out, byte(b.acc))
	}
	b.acc, b.n = 0, 0
}

// deflater writes one fixed-Huffman deflate block, LSB first, and the
// Adler-32 of what that block decompresses to.
type deflater struct {
	bitWriter
	adler adler
}

// symbol writes a literal/length symbol (0–287) with its fixed code.
func (z *deflater) symbol(s int) { z.code(fixedCodes[s]) }

func (z *deflater) literal(b byte) {
	z.symbol(int(b))
	z.adler.byte(b)
}

// match writes back-references of total length n (≥ 3) at distance d (1 or 3).
func (z *deflater) match(n, d int) {
	for n > 0 {
		l := n
		if n > 258 {
			l = 258
			if n-258 < 3 {
				l = n - 3
			}
		}
		lc := lengthCodes[l]
		z.symbol(int(lc.sym))
		if lc.extraBits > 0 {
			z.bits(uint64(lc.extra), uint(lc.extraBits))
		}
		// Distance codes 0 (d=1) and 2 (d=3) are 5-bit codes without extra
		// bits; fixed distance codes are their reversed 5-bit values.
		z.bits(uint64(reverse(uint16(d-1), 5)), 5)
		n -= l
	}
}

// diffRow writes one Up-filtered pixel row: cur minus prev, cell by cell,
// each cell repeated across its pixel width, runs of equal differences as
// one literal pixel and a back-reference at distance 3.
func (z *deflater) diffRow(cur, prev []byte, width int) {
	z.literal(2) // filter type Up
	diff := func(cx int) [3]byte {
		return [3]byte{cur[3*cx] - prev[3*cx], cur[3*cx+1] - prev[3*cx+1], cur[3*cx+2] - prev[3*cx+2]}
	}
	cw := len(cur) / 3
	runStart, d := 0, diff(0)
	for cx := 1; cx <= cw; cx++ {
		var next [3]byte
		if cx < cw {
			if next = diff(cx); next == d {
				continue
			}
		}
		// Cells runStart..cx-1 share the difference d; emit their pixels.
		pixels := min(cx*cell, width) - runStart*cell
		z.literal(d[0])
		z.literal(d[1])
		z.literal(d[2])
		if k := pixels - 1; k > 0 {
			z.match(3*k, 3)
			z.adler.repeat3(d, k)
		}
		runStart, d = cx, next
	}
}

// zeroRow writes an Up-filtered row identical to the row above it.
func (z *deflater) zeroRow(rowLen int) {
	z.literal(2)
	z.literal(0)
	if n := rowLen - 2; n >= 3 {
		z.match(n, 1)
		z.adler.zeros(n)
	} else {
		for range n {
			z.literal(0)
		}
	}
}

// adler is a running Adler-32 checksum that can absorb long repeats in
// constant time.
type adler struct{ s1, s2 uint64 }

const adlerMod = 65521

func (a *adler) byte(b byte) {
	a.s1 = (a.s1 + uint64(b)) % adlerMod
	a.s2 = (a.s2 + a.s1) % adlerMod
}

// repeat3 absorbs the 3-byte pattern d repeated k times.
func (a *adler) repeat3(d [3]byte, k int) {
	s := uint64(d[0]) + uint64(d[1]) + uint64(d[2])
	t := 3*uint64(d[0]) + 2*uint64(d[1]) + uint64(d[2])
	kk := uint64(k)
	a.s2 = (a.s2 + 3*kk%adlerMod*a.s1 + 3*s*(kk*(kk-1)/2%adlerMod) + kk%adlerMod*t) % adlerMod
	a.s1 = (a.s1 + kk%adlerMod*s) % adlerMod
}

// zeros absorbs n zero bytes.
func (a *adler) zeros(n int) {
	a.s2 = (a.s2 + uint64(n)%adlerMod*a.s1) % adlerMod
}

func (a *adler) sum() uint32 {
	return uint32(a.s2<<16 | a.s1)
}

// huff is a fixed Huffman code, already bit-reversed for LSB-first output.
type huff struct {
	code uint16
	len  uint8
}

// lengthCode is how deflate writes a match length: a symbol and extra bits.
type lengthCode struct {
	sym       uint16
	extra     uint16
	extraBits uint8
}

// fixedCodes and lengthCodes are immutable tables (RFC 1951 §3.2.5–3.2.6).
var (
	fixedCodes  = buildFixedCodes()
	lengthCodes = buildLengthCodes()
)

func buildFixedCodes() [288]huff {
	var t [288]huff
	for s := range 288 {
		var code, n int
		switch {
		case s < 144:
			code, n = 0x30+s, 8
		case s < 256:
			code, n = 0x190+s-144, 9
		case s < 280:
			code, n = s-256, 7
		default:
			code, n = 0xc0+s-280, 8
		}
		t[s] = huff{reverse(uint16(code), uint(n)), uint8(n)}
	}
	return t
}

func buildLengthCodes() [259]lengthCode {
	base := [29]int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	extra := [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	var t [259]lengthCode
	for i := len(base) - 1; i >= 0; i-- {
		for l := base[i]; l < base[i]+(1<<extra[i]) && l <= 258; l++ {
			if t[l].sym == 0 {
				t[l] = lengthCode{uint16(257 + i), uint16(l - base[i]), extra[i]}
			}
		}
	}
	return t
}

func reverse(v uint16, n uint) uint16 {
	var r uint16
	for range n {
		r = r<<1 | v&1
		v >>= 1
	}
	return r
}
