package stability

import (
	"bufio"
	"io"
	"sync"
)

// buffers lends the buffers that images stream through: a copy buffer per
// raw answer, decoded JSON image or uploaded input, and a read buffer per
// JSON answer. A run of many jobs reuses a few of them instead of
// allocating 32 KiB (and 64 KiB more for JSON) per image. The zero value
// is ready to use, and it is safe for concurrent use.
type buffers struct {
	copies  sync.Pool // *[copyBufferSize]byte
	readers sync.Pool // *bufio.Reader of scanBufferSize bytes
}

// copyBuf lends a copy buffer; give it back with putCopyBuf once nothing
// refers to it.
func (b *buffers) copyBuf() *[copyBufferSize]byte {
	if p, ok := b.copies.Get().(*[copyBufferSize]byte); ok {
		return p
	}
	return new([copyBufferSize]byte)
}

func (b *buffers) putCopyBuf(p *[copyBufferSize]byte) { b.copies.Put(p) }

// reader lends a read buffer reading from r; give it back with putReader
// once nothing reads from it.
func (b *buffers) reader(r io.Reader) *bufio.Reader {
	if br, ok := b.readers.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, scanBufferSize)
}

func (b *buffers) putReader(br *bufio.Reader) {
	br.Reset(nil) // let go of the body
	b.readers.Put(br)
}

// copyPooled copies r to w, as io.CopyBuffer does, through a lent buffer.
func (b *buffers) copyPooled(w io.Writer, r io.Reader) (int64, error) {
	buf := b.copyBuf()
	defer b.putCopyBuf(buf)
	return io.CopyBuffer(w, r, buf[:])
}
