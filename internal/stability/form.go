package stability

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/textproto"

	"golang.org/x/sync/errgroup"
)

// maxRequestBody is the largest request body the Stable Image API takes, in
// bytes: it answers a larger one with 413 payload_too_large ("Your request
// was larger than 10MiB", the PayloadTooLarge response of the 2026-09 spec
// kept in internal/prismtest).
const maxRequestBody = 10 << 20

// sniffInput is how many leading bytes of an image input are read to tell
// its content type, as many as http.DetectContentType considers.
const sniffInput = 512

// errBodyAbandoned stops the body's writer once the request is over.
var errBodyAbandoned = errors.New("request body abandoned")

// formPart is one part of a multipart/form-data body: a form value, or an
// image input streamed from its open file or held in memory.
type formPart struct {
	name   string
	value  string  // a form value's text; "" for an image
	file   fs.File // the image input's open file; nil for a form value or an input in memory
	head   []byte  // the image's first bytes (at most sniffInput), already read; all of it when held in memory
	size   int64   // the image's size in bytes
	format string  // "png", "jpeg" or "webp", from head; "" for a form value
}

// formBody is a multipart/form-data request body. A small one (at most
// smallForm bytes) is made in memory at once and sent in one piece; a
// larger one is written part by part as the transport reads it, an image
// input copied from its file 32 KiB at a time, never held whole. Its length
// is known before the first byte is sent, so the request carries a
// Content-Length as the API's own examples do, and a body over the API's
// limit is refused without sending it.
type formBody struct {
	parts    []formPart
	boundary string // the multipart boundary, random
	ctype    string // multipart/form-data with the boundary
	length   int64  // bytes of the whole body
	data     []byte // the whole body when made in memory; nil when streamed
	bufs     *buffers
}

// smallForm is the largest form body, in bytes, made in memory before it is
// sent rather than streamed: most inputs are a few hundred KiB at most, and
// a body in memory is made in one pass, goes out in as few writes as the
// connection takes, and needs no goroutine to feed it.
const smallForm = 256 << 10

// partOverhead bounds the bytes a part adds to a body besides its value or
// file: its boundary line and headers, with a field name and format of at
// most 64 bytes each.
const partOverhead = 512

// newFormBody opens the image inputs among fields (already checked against
// the catalogue; isImage tells which they are), then makes the body in
// memory when it is small, or else measures it. The caller must close it.
// Errors wrap ErrInvalidRequest.
func (c *Client) newFormBody(fields []Field, isImage func(name string) bool) (_ *formBody, err error) {
	b := &formBody{parts: make([]formPart, 0, len(fields)), bufs: c.bufs}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	for _, f := range fields {
		if !isImage(f.Name) {
			b.parts = append(b.parts, formPart{name: f.Name, value: f.Value})
			continue
		}
		p, err := c.openInput(f.Name, f.Value, f.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: field %s: %w", ErrInvalidRequest, f.Name, err)
		}
		b.parts = append(b.parts, p)
	}
	if b.estimate() <= smallForm {
		return b, b.inMemory()
	}
	// Measure by writing everything but the files' bytes, with the boundary
	// the real body will use.
	var n countingWriter
	mw := multipart.NewWriter(&n)
	if err := b.write(mw, func(_ io.Writer, p *formPart) error { n += countingWriter(p.size); return nil }); err != nil {
		return nil, err
	}
	b.boundary, b.ctype, b.length = mw.Boundary(), mw.FormDataContentType(), int64(n)
	if b.length > maxRequestBody {
		return nil, fmt.Errorf("%w: the request body would be %d bytes, over the API's limit of 10 MiB (%d bytes)", ErrInvalidRequest, b.length, maxRequestBody)
	}
	return b, nil
}

// estimate returns an upper bound of the body's length in bytes.
func (b *formBody) estimate() int64 {
	n := int64(partOverhead) // the closing boundary
	for _, p := range b.parts {
		n += partOverhead + int64(len(p.name)+len(p.value)) + p.size
	}
	return n
}

// inMemory makes the whole body in memory, and closes the inputs' files.
func (b *formBody) inMemory() error {
	var buf bytes.Buffer
	buf.Grow(int(b.estimate()))
	mw := multipart.NewWriter(&buf)
	b.boundary = mw.Boundary()
	if err := b.writeTo(&buf); err != nil {
		return err
	}
	b.close()
	b.parts = nil
	b.ctype, b.length, b.data = mw.FormDataContentType(), int64(buf.Len()), buf.Bytes()
	return nil
}

// openInput opens an image input and reads its first bytes to tell its
// format; an input whose bytes data holds is taken from them. It refuses
// what is not a regular file of PNG, JPEG or WebP.
func (c *Client) openInput(name, path string, data []byte) (_ formPart, err error) {
	if data != nil {
		if len(data) == 0 {
			return formPart{}, fmt.Errorf("%s is empty", path)
		}
		format, detected := sniffFormat(data[:min(len(data), sniffInput)])
		if format == "" {
			return formPart{}, fmt.Errorf("%s is %s by its content, not PNG, JPEG or WebP", path, detected)
		}
		return formPart{name: name, head: data, size: int64(len(data)), format: format}, nil
	}
	f, err := c.open(path)
	if err != nil {
		return formPart{}, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return formPart{}, err
	}
	switch {
	case !fi.Mode().IsRegular():
		return formPart{}, fmt.Errorf("%s is not a regular file", path)
	case fi.Size() == 0:
		return formPart{}, fmt.Errorf("%s is empty", path)
	}
	head := make([]byte, min(fi.Size(), sniffInput))
	if _, err := io.ReadFull(f, head); err != nil {
		return formPart{}, fmt.Errorf("read %s: %w", path, err)
	}
	format, detected := sniffFormat(head)
	if format == "" {
		return formPart{}, fmt.Errorf("%s is %s by its content, not PNG, JPEG or WebP", path, detected)
	}
	return formPart{name: name, file: f, head: head, size: fi.Size(), format: format}, nil
}

// header is a file part's header. The file name is made from the field
// name, so no local path reaches the server or the part's header.
func (p *formPart) header() textproto.MIMEHeader {
	h := make(textproto.MIMEHeader, 2)
	h.Set("Content-Disposition", `form-data; name="`+p.name+`"; filename="`+p.name+"."+p.format+`"`)
	h.Set("Content-Type", "image/"+p.format)
	return h
}

// write writes the body's parts to mw, with file writing each file's
// bytes, and closes mw.
func (b *formBody) write(mw *multipart.Writer, file func(w io.Writer, p *formPart) error) error {
	for i := range b.parts {
		p := &b.parts[i]
		if p.format == "" {
			if err := mw.WriteField(p.name, p.value); err != nil {
				return err
			}
			continue
		}
		w, err := mw.CreatePart(p.header())
		if err != nil {
			return err
		}
		if err := file(w, p); err != nil {
			return err
		}
	}
	return mw.Close()
}

// writeTo writes the body, the same bytes newFormBody measured, to w. An input that cannot be read, or no longer has the size it had
// when opened, is an error wrapping ErrInvalidRequest; w's errors are
// returned as they are.
func (b *formBody) writeTo(w io.Writer) error {
	mw := multipart.NewWriter(w)
	if err := mw.SetBoundary(b.boundary); err != nil {
		return err
	}
	buf := b.bufs.copyBuf()
	defer b.bufs.putCopyBuf(buf)
	return b.write(mw, func(w io.Writer, p *formPart) error {
		if _, err := w.Write(p.head); err != nil {
			return err
		}
		rest := p.size - int64(len(p.head))
		if rest == 0 {
			return nil
		}
		rr := &recordingReader{r: io.LimitReader(p.file, rest)}
		n, err := io.CopyBuffer(w, rr, buf[:])
		switch {
		case rr.err != nil:
			return fmt.Errorf("%w: field %s: %w", ErrInvalidRequest, p.name, rr.err)
		case err != nil:
			return err
		case n < rest:
			return fmt.Errorf("%w: field %s: the file shrank from %d bytes while being sent", ErrInvalidRequest, p.name, p.size)
		}
		return nil
	})
}

// close closes the body's files.
func (b *formBody) close() {
	for _, p := range b.parts {
		if p.file != nil {
			p.file.Close()
		}
	}
}

// countingWriter counts the bytes written to it.
type countingWriter int64

func (n *countingWriter) Write(p []byte) (int, error) {
	*n += countingWriter(len(p))
	return len(p), nil
}

// postForm sends body as a POST to path and returns the 2xx answer, as send
// does; the caller must close its body. A goroutine writes the body into a
// pipe that the transport reads; it has ended once postForm returns an
// error, or once the answer's body is closed. When the request failed
// because an input could not be read, the error is that one (wrapping
// ErrInvalidRequest): the body never completed, so the server cannot have
// done the work.
func (c *Client) postForm(ctx context.Context, op, path string, body *formBody) (*http.Response, error) {
	if body.data != nil {
		return c.send(ctx, op, http.MethodPost, path, c.accept, &requestBody{r: bytes.NewReader(body.data), n: body.length, ctype: body.ctype, data: body.data})
	}
	pr, pw := io.Pipe()
	var g errgroup.Group
	g.Go(func() error {
		err := body.writeTo(pw)
		pw.CloseWithError(err) // nil: the reader sees io.EOF
		return err
	})
	// The transport may stop reading early (an answer before the whole
	// body, a broken connection); closing the reader ends a writer still
	// blocked. It must not happen while the answer streams in: after the
	// announced length the transport reads the body once more to see it
	// end, and an error there closes the connection under the answer.
	abandon := func() error {
		pr.CloseWithError(errBodyAbandoned)
		return g.Wait()
	}
	resp, err := c.send(ctx, op, http.MethodPost, path, c.accept, &requestBody{r: pr, n: body.length, ctype: body.ctype})
	if err != nil {
		if werr := abandon(); errors.Is(werr, ErrInvalidRequest) {
			return nil, fmt.Errorf("%s: %w", op, werr)
		}
		return nil, err
	}
	resp.Body = &formAnswer{ReadCloser: resp.Body, abandon: abandon}
	return resp, nil
}

// formAnswer is the answer to a form request: closing it ends the body's
// writer too.
type formAnswer struct {
	io.ReadCloser
	abandon func() error
}

func (a *formAnswer) Close() error {
	err := a.ReadCloser.Close()
	_ = a.abandon() // an input that breaks once the answer came changes nothing
	return err
}
