package imagefile

import (
	"bufio"
	"compress/flate"
	"compress/zlib"
	"encoding/binary"
	"io"
)

// Checking a PNG's image data means inflating it and summing every byte
// with Adler-32, the zlib stream's checksum. hash/adler32 adds the bytes
// one at a time, each sum waiting on the previous one: it took half the
// time Verify spent on a 1024×1024 image. zlibReader sums eight bytes at a
// time instead, in the lanes of a 64-bit word, about twice as fast, and is
// otherwise compress/zlib's reader, errors included.

// zlibReader reads the data of a zlib stream (RFC 1950) without a preset
// dictionary from r, which it reads no further than the stream's end, and
// checks its Adler-32 checksum: a mismatch is zlib.ErrChecksum, a bad
// header zlib.ErrHeader, a preset dictionary zlib.ErrDictionary.
type zlibReader struct {
	r     *bufio.Reader
	flate io.Reader
	sum   uint32 // Adler-32 of the data read so far
	err   error  // sticky
}

func newZlibReader(r *bufio.Reader) (*zlibReader, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	cmf, flg := h[0], h[1]
	switch {
	case cmf&0x0f != 8 || cmf>>4 > 7 || binary.BigEndian.Uint16(h[:])%31 != 0:
		return nil, zlib.ErrHeader
	case flg&0x20 != 0:
		return nil, zlib.ErrDictionary
	}
	return &zlibReader{r: r, flate: flate.NewReader(r), sum: 1}, nil
}

func (z *zlibReader) Read(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	n, err := z.flate.Read(p)
	z.sum = adler32Update(z.sum, p[:n])
	if err != io.EOF {
		z.err = err
		return n, err
	}
	var want [4]byte
	if _, err := io.ReadFull(z.r, want[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		z.err = err
		return n, err
	}
	if binary.BigEndian.Uint32(want[:]) != z.sum {
		z.err = zlib.ErrChecksum
		return n, z.err
	}
	z.err = io.EOF
	return n, io.EOF
}

const (
	adlerMod = 65521 // the largest prime below 2¹⁶
	// adlerWords is how many 8-byte words adler32Block sums: 23, the most
	// whose running sums cannot overflow its 16-bit lanes
	// (255 × 23 × 22 / 2 < 2¹⁶).
	adlerWords = 23
	adlerBlock = 8 * adlerWords
	// adlerReduce is how many blocks go between reductions modulo
	// adlerMod: s1 stays below 2²⁸ and s2 below 2⁴⁸.
	adlerReduce = 5000
	evenBytes   = 0x00ff00ff00ff00ff
	lanePairs   = 0x0000ffff0000ffff
)

// adler32Update returns the Adler-32 checksum sum updated with p, as
// hash/adler32 computes it. Over a block of n bytes x₀…xₙ₋₁ the sums
// grow by s1 += Σ xⱼ and s2 += n·s1 + Σ (n−j)·xⱼ; with the block in
// words of 8 bytes, n−j is 8 × (words from this one to the end) − (the
// byte's place in its word), which adler32Block's lane sums give.
func adler32Update(sum uint32, p []byte) uint32 {
	s1, s2 := uint64(sum&0xffff), uint64(sum>>16)
	for blocks := 0; len(p) >= adlerBlock; blocks++ {
		even, odd, evenTail, oddTail := adler32Block((*[adlerBlock]byte)(p))
		p = p[adlerBlock:]
		n := laneSum(even) + laneSum(odd)
		s2 += adlerBlock*s1 + 8*(laneSum(evenTail)+laneSum(oddTail)+n) - placeSum(even, 0) - placeSum(odd, 1)
		s1 += n
		if blocks == adlerReduce {
			s1, s2, blocks = s1%adlerMod, s2%adlerMod, 0
		}
	}
	for _, x := range p {
		s1 += uint64(x)
		s2 += s1
	}
	return uint32(s2%adlerMod)<<16 | uint32(s1%adlerMod)
}

// adler32Block sums a block's words in four 16-bit lanes each: even and
// odd hold the sums of the words' even and odd bytes (lane l the bytes
// 2l and 2l+1), evenTail and oddTail the sums, over every word, of what
// even and odd held before it: Σ (words after it) × word.
func adler32Block(b *[adlerBlock]byte) (even, odd, evenTail, oddTail uint64) {
	for i := 0; i < adlerWords; i++ {
		v := binary.LittleEndian.Uint64(b[8*i:])
		evenTail += even
		oddTail += odd
		even += v & evenBytes
		odd += v >> 8 & evenBytes
	}
	return even, odd, evenTail, oddTail
}

// laneSum adds the four 16-bit lanes of v.
func laneSum(v uint64) uint64 {
	v = v&lanePairs + v>>16&lanePairs
	return v&0xffffffff + v>>32
}

// placeSum weighs each 16-bit lane l of v by the place in its word of the
// bytes it sums, 2l+odd, and adds them.
func placeSum(v, odd uint64) uint64 {
	return (v&0xffff)*odd + (v>>16&0xffff)*(2+odd) + (v>>32&0xffff)*(4+odd) + (v>>48)*(6+odd)
}
