package sandbox

import (
	"encoding/binary"
	"math/bits"
)

// The sandbox writes WebP answers as lossless WebP (the VP8L bitstream,
// RFC 9649 §3) with the smallest encoder that keeps files small for its
// mosaic pictures:
//
//   - one predictor transform whose mode is T (the pixel above) for every
//     block, so a pixel row inside a cell row is all zero residuals and the
//     first row of a cell row is a few runs of one residual each (as the
//     PNG encoder's Up filter does);
//   - no colour cache and one prefix code group, with fixed code lengths
//     that need no statistics: 8 bits for every red and blue value, and 8 or
//     9 for each green value and length prefix; alpha, always a zero
//     residual, and the one distance used take no bits;
//   - each run of equal residuals as a literal and backward references at
//     distance 1 (the pixel to the left) of up to 4096 pixels.

const (
	vp8lSignature = 0x2f
	// predictorBits sets the predictor blocks to 512×512 pixels (the
	// largest), which all use mode T.
	predictorBits = 9
	predictTop    = 2 // predictor mode T
	maxCopy       = 4096
	// copyLeft is the distance prefix symbol of distance code 2, which maps
	// to the pixel to the left (RFC 9649 §4.2.2: code 2 is (1, 0)).
	copyLeft = 1
)

// Prefix codes of the main image (see canonical), read-only tables like
// fixedCodes.
var (
	webpGreen = canonical(greenLengths()) // 256 green values, then 24 length prefixes
	webpByte  = canonical(byteLengths())  // red and blue values
)

// greenLengths gives the 256 green values and 24 length prefix symbols a
// complete code: 232 of length 8 and 48 of length 9 (232/256 + 48/512 = 1).
// The 9-bit ones are the residuals furthest from zero, the rarest.
func greenLengths() []uint8 {
	l := make([]uint8, 256+24)
	for s := range l {
		l[s] = 8
		if s >= 104 && s < 152 {
			l[s] = 9
		}
	}
	return l
}

func byteLengths() []uint8 {
	l := make([]uint8, 256)
	for s := range l {
		l[s] = 8
	}
	return l
}

// canonical returns the canonical prefix codes of the code lengths (RFC
// 1951 §3.2.2, which VP8L shares), bit-reversed for an LSB-first stream.
func canonical(lengths []uint8) []huff {
	var count, next [16]int
	for _, l := range lengths {
		count[l]++
	}
	count[0] = 0
	code := 0
	for l := 1; l < 16; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	out := make([]huff, len(lengths))
	for s, l := range lengths {
		if l > 0 {
			out[s] = huff{reverse(uint16(next[l]), uint(l)), l}
			next[l]++
		}
	}
	return out
}

// renderWebP encodes the picture as a lossless WebP file.
func renderWebP(p picture) []byte {
	w, h := p.width, p.height
	const head = 20 // RIFF header and the VP8L chunk header
	b := bitWriter{out: make([]byte, head, 4096)}
	copy(b.out, "RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00")
	b.out = append(b.out, vp8lSignature)
	b.bits(uint64(w-1), 14)
	b.bits(uint64(h-1), 14)
	b.bits(0, 1) // alpha_is_used: every pixel is opaque
	b.bits(0, 3) // version 0

	b.bits(1, 1) // a transform:
	b.bits(0, 2) // the predictor transform
	b.bits(predictorBits-2, 3)
	// Its image holds one pixel per block, the mode in green; with
	// one-symbol codes its pixels take no bits.
	b.bits(0, 1)                                        // no colour cache
	for _, sym := range []int{predictTop, 0, 0, 0, 0} { // green, red, blue, alpha, distance
		b.oneSymbol(sym)
	}
	b.bits(0, 1) // no more transforms

	b.bits(0, 1) // no colour cache
	b.bits(0, 1) // one prefix code group for the whole image
	b.lengths(greenLengths())
	b.lengths(byteLengths()) // red
	b.lengths(byteLengths()) // blue
	b.oneSymbol(0)           // alpha: every residual is 0
	b.oneSymbol(copyLeft)    // distance

	r := runs{b: &b}
	cw, ch := cellsOf(w), cellsOf(h)
	prev, cur := make([]byte, 3*cw), make([]byte, 3*cw)
	var zero [3]byte
	for cy := range ch {
		p.row(cur, cy)
		for cx := range cw {
			width := min((cx+1)*cell, w) - cx*cell
			var d [3]byte
			if cy == 0 {
				// The top row predicts from the left, its first pixel
				// from opaque black.
				for c := range 3 {
					d[c] = cur[3*cx+c]
					if cx > 0 {
						d[c] -= cur[3*(cx-1)+c]
					}
				}
				r.add(d, 1)
				r.add(zero, width-1)
				continue
			}
			for c := range 3 {
				d[c] = cur[3*cx+c] - prev[3*cx+c]
			}
			r.add(d, width)
		}
		r.add(zero, (min(cell, h-cy*cell)-1)*w) // the cell row's other pixel rows
		prev, cur = cur, prev
	}
	r.flush()
	b.flush()

	size := len(b.out) - head
	if size%2 == 1 {
		b.out = append(b.out, 0) // RIFF chunks are padded to an even size
	}
	binary.LittleEndian.PutUint32(b.out[4:], uint32(len(b.out)-8))
	binary.LittleEndian.PutUint32(b.out[16:], uint32(size))
	return b.out
}

// oneSymbol writes a simple prefix code of one symbol, which then takes no
// bits in the data.
func (b *bitWriter) oneSymbol(sym int) {
	b.bits(1, 1) // simple code
	b.bits(0, 1) // one symbol
	if sym < 2 {
		b.bits(0, 1) // a 1-bit symbol
		b.bits(uint64(sym), 1)
		return
	}
	b.bits(1, 1) // an 8-bit symbol
	b.bits(uint64(sym), 8)
}

// lengths writes a normal prefix code whose code lengths are all 8 or 9.
// Its code-length code gives lengths 8 and 9 one bit each.
func (b *bitWriter) lengths(lengths []uint8) {
	b.bits(0, 1) // normal code
	// The code-length code's lengths, in the order of RFC 9649
	// §3.7.2.1.2, up to symbol 9, the thirteenth.
	order := [...]int{17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9}
	b.bits(uint64(len(order)-4), 4)
	for _, sym := range order {
		if sym == 8 || sym == 9 {
			b.bits(1, 3)
		} else {
			b.bits(0, 3)
		}
	}
	b.bits(0, 1) // every symbol's length follows
	for _, l := range lengths {
		b.bits(uint64(l-8), 1) // canonical: length 8 is code 0, length 9 code 1
	}
}

// runs writes residual pixels, merging runs of one value into a literal
// and backward references.
type runs struct {
	b  *bitWriter
	px [3]byte // red, green, blue residual
	n  int     // pixels of px pending
}

func (r *runs) add(px [3]byte, n int) {
	if n <= 0 {
		return
	}
	if r.n > 0 && px == r.px {
		r.n += n
		return
	}
	r.flush()
	r.px, r.n = px, n
}

func (r *runs) flush() {
	if r.n == 0 {
		return
	}
	r.b.code(webpGreen[r.px[1]])
	r.b.code(webpByte[r.px[0]])
	r.b.code(webpByte[r.px[2]])
	for k := r.n - 1; k > 0; {
		l := min(k, maxCopy)
		prefix, extraBits, extra := prefixCode(l - 1)
		r.b.code(webpGreen[256+prefix])
		r.b.bits(uint64(extra), extraBits)
		// The distance takes no bits: its code has one symbol, and
		// copyLeft has no extra bits.
		k -= l
	}
	r.n = 0
}

// prefixCode splits a length or distance value v (the length minus 1) into
// its prefix symbol and extra bits (RFC 9649 §3.7.2.2, LZ77 prefix coding).
func prefixCode(v int) (prefix int, extraBits uint, extra int) {
	if v < 4 {
		return v, 0, 0
	}
	high := bits.Len(uint(v)) - 1
	second := v >> (high - 1) & 1
	return 2*high + second, uint(high - 1), v & (1<<(high-1) - 1)
}
