package imagefile

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"errors"
	"hash/adler32"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestAdler32Update holds adler32Update to hash/adler32 on lengths around
// its block size, on bytes of 0xff (the largest sums, where an overflow
// would show) over more than one reduction period, and on data split at
// every kind of place.
func TestAdler32Update(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var tests []struct {
		name string
		data []byte
	}
	add := func(name string, data []byte) {
		tests = append(tests, struct {
			name string
			data []byte
		}{name, data})
	}
	for _, n := range []int{0, 1, 7, 8, 9, adlerBlock - 1, adlerBlock, adlerBlock + 1, 2*adlerBlock + 7, 4096, 100_003} {
		add("random "+strconv.Itoa(n), random(n))
	}
	add("0xff past a reduction", bytes.Repeat([]byte{0xff}, (adlerReduce+3)*adlerBlock+5))
	add("0xff, 5 MiB", bytes.Repeat([]byte{0xff}, 5<<20))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := adler32.Checksum(tt.data)
			if got := adler32Update(1, tt.data); got != want {
				t.Fatalf("adler32Update(1, %d bytes) = %08x, want %08x", len(tt.data), got, want)
			}
			for _, cut := range []int{1, 3, 8, adlerBlock, adlerBlock + 5} {
				sum := uint32(1)
				for p := tt.data; len(p) > 0; {
					n := min(cut, len(p))
					sum, p = adler32Update(sum, p[:n]), p[n:]
				}
				if sum != want {
					t.Fatalf("adler32Update in pieces of %d = %08x, want %08x", cut, sum, want)
				}
			}
		})
	}
}

// TestZlibReader: zlibReader reads what compress/zlib reads and fails as it
// does, and stops at the stream's end.
func TestZlibReader(t *testing.T) {
	compress := func(data []byte, level int) []byte {
		var b bytes.Buffer
		zw, err := zlib.NewWriterLevel(&b, level)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(data)
		zw.Close()
		return b.Bytes()
	}
	text := bytes.Repeat([]byte("scanline 0123456789 "), 5000)
	good := compress(text, zlib.BestSpeed)
	badSum := bytes.Clone(good)
	badSum[len(badSum)-1] ^= 1
	badData := bytes.Clone(good)
	badData[len(badData)/2] ^= 0x40
	tests := []struct {
		name   string
		stream []byte
	}{
		{"best speed", good},
		{"best compression", compress(text, zlib.BestCompression)},
		{"stored", compress(text[:70_000], zlib.NoCompression)},
		{"empty", compress(nil, zlib.DefaultCompression)},
		{"wrong checksum", badSum},
		{"damaged data", badData},
		{"no checksum", good[:len(good)-4]},
		{"half a checksum", good[:len(good)-2]},
		{"no header", nil},
		{"half a header", good[:1]},
		{"not deflate", append([]byte{0x77, 0x00}, good[2:]...)},
		{"header check off", append([]byte{good[0], good[1] ^ 1}, good[2:]...)},
		{"preset dictionary", []byte{0x78, 0xbb, 0, 0, 0, 0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := append(bytes.Clone(tt.stream), "after"...)
			want, wantErr := readZlib(stream, func(r *bufio.Reader) (io.Reader, error) { return zlib.NewReader(r) })
			got, gotErr := readZlib(stream, func(r *bufio.Reader) (io.Reader, error) { return newZlibReader(r) })
			if !bytes.Equal(got.data, want.data) || got.rest != want.rest {
				t.Errorf("read %d bytes, then %q was left; compress/zlib read %d, then %q", len(got.data), got.rest, len(want.data), want.rest)
			}
			if !errors.Is(gotErr, wantErr) && (gotErr == nil || wantErr == nil || gotErr.Error() != wantErr.Error()) {
				t.Errorf("error %v, compress/zlib's %v", gotErr, wantErr)
			}
		})
	}
}

type zlibRead struct {
	data []byte
	rest string // what the buffer still holds after the stream
}

// readZlib reads stream with a reader open makes, 1000 bytes at a time.
func readZlib(stream []byte, open func(*bufio.Reader) (io.Reader, error)) (zlibRead, error) {
	br := bufio.NewReader(bytes.NewReader(stream))
	zr, err := open(br)
	if err != nil {
		return zlibRead{}, err
	}
	var out zlibRead
	buf := make([]byte, 1000)
	for {
		n, err := zr.Read(buf)
		out.data = append(out.data, buf[:n]...)
		if err == io.EOF {
			rest, _ := io.ReadAll(br)
			out.rest = string(rest)
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// BenchmarkAdler32 compares adler32Update with hash/adler32 on the
// 32 KiB reads of a PNG's image data.
func BenchmarkAdler32(b *testing.B) {
	data := bytes.Repeat([]byte{0x12, 0x9a, 0xff, 0x00, 0x7e}, 32<<10/5)
	b.Run("hash/adler32", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			adler32.Checksum(data)
		}
	})
	b.Run("adler32Update", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			adler32Update(1, data)
		}
	})
}
