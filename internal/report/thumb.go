package report

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sync/errgroup"

	"github.com/batch-tool/batch/internal/imagefile"
)

// Thumbnails embedded in the HTML report. A JPEG of at most 256 pixels on
// its long side at quality 80 is some 5–20 KB, so a page of 1,000 images
// stays within a few tens of MB.
const (
	thumbSide    = 256 // pixels on the long side
	thumbQuality = 80  // JPEG quality, 1–100
	// maxEmbedWebP is the largest WebP file, in bytes, embedded as it is:
	// the standard library cannot decode WebP to shrink it.
	maxEmbedWebP = 256 << 10
	// maxThumbPixels bounds the images decoded (width × height), so a
	// huge or hostile file cannot exhaust memory; a 4096² upscale is 16 Mpx.
	maxThumbPixels = 64 << 20
	// maxEmbedded is how many images a report embeds as thumbnails, in job
	// order; later ones are shown by their path, relative to the report's
	// folder, so a run of 100,000 images neither takes minutes to decode
	// nor makes a page of gigabytes.
	maxEmbedded   = 500
	checkerSquare = 8 // pixels: the checkerboard behind translucent pixels
)

// thumbnail is what the HTML report shows for one image file: its
// thumbnail as a data: URI, or why there is none.
type thumbnail struct {
	src template.URL // data: URI; "" when the image could not be embedded
	// width and height are the file's size in pixels; 0 when unknown.
	width, height int
	why           string // why src is "", e.g. "missing"; "" otherwise
}

// embedder reads a run's images and makes their thumbnails.
type embedder struct {
	dir     string // the folder image paths are relative to; "" is the current directory
	maxWebP int64  // bytes: a larger WebP file is not embedded
}

// thumbnails returns the thumbnails of every image of jobs, indexed like
// jobs[i].Images[k]. Unreadable images get a reason, not an error: only a
// done ctx stops it.
func (e embedder) thumbnails(ctx context.Context, jobs []RunJob) ([][]thumbnail, error) {
	r := &Run{Jobs: jobs}
	x, err := e.embeds(ctx, r)
	if err != nil {
		return nil, err
	}
	out := make([][]thumbnail, len(jobs))
	for i := range jobs {
		out[i] = x.of(i, &jobs[i])
	}
	return out, nil
}

// embeds are the thumbnails of a run's first maxEmbedded images, in job
// and image order; later images are shown by their path.
type embeds struct {
	start  []int32 // per job, up to the last with an embedded image: the number of its first image
	thumbs []thumbnail
}

// embeds reads r's first maxEmbedded images and makes their thumbnails,
// several at once. Unreadable images get a reason, not an error: only a
// done ctx stops it.
func (e embedder) embeds(ctx context.Context, r *Run) (*embeds, error) {
	x := &embeds{}
	var paths []string
	errEnough := errors.New("enough images")
	err := r.each(func(_ int, j *RunJob) error {
		if len(paths) >= maxEmbedded {
			return errEnough
		}
		x.start = append(x.start, int32(len(paths)))
		for _, img := range j.Images {
			if len(paths) < maxEmbedded {
				paths = append(paths, img.Path)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, err
	}
	x.thumbs = make([]thumbnail, len(paths))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for n, p := range paths {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			x.thumbs[n] = e.thumbnail(filepath.Join(e.dir, filepath.FromSlash(p)))
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("embed images: %w", err)
	}
	return x, nil
}

// of returns the thumbnails of job i, j: embedded, or for an image past
// the first maxEmbedded, its path.
func (x *embeds) of(i int, j *RunJob) []thumbnail {
	out := make([]thumbnail, len(j.Images))
	for k, img := range j.Images {
		if i < len(x.start) && int(x.start[i])+k < len(x.thumbs) {
			out[k] = x.thumbs[int(x.start[i])+k]
		} else {
			out[k] = thumbnail{src: template.URL(img.Path)}
		}
	}
	return out
}

// thumbnail reads the image file at path: a PNG or JPEG becomes a small
// JPEG, a small WebP file is kept as it is.
func (e embedder) thumbnail(path string) thumbnail {
	// Stat first: opening a FIFO would block.
	if st, err := os.Stat(path); err != nil {
		return thumbnail{why: whyUnread(err)}
	} else if !st.Mode().IsRegular() {
		return thumbnail{why: "not a file"}
	}
	f, err := os.Open(path)
	if err != nil {
		return thumbnail{why: whyUnread(err)}
	}
	defer f.Close()
	info, err := imagefile.Read(f)
	if err != nil {
		return thumbnail{why: whyUnread(err)}
	}
	t := thumbnail{width: info.Width, height: info.Height}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.why = "unreadable"
		return t
	}
	switch {
	case info.Format == imagefile.WebP:
		data, err := io.ReadAll(io.LimitReader(f, e.maxWebP+1))
		switch {
		case err != nil:
			t.why = "unreadable"
		case int64(len(data)) > e.maxWebP:
			t.why = "WebP too large to embed"
		default:
			t.src = dataURI("image/webp", data)
		}
		return t
	case int64(info.Width)*int64(info.Height) > maxThumbPixels:
		t.why = "too large to preview"
		return t
	}
	decode := png.Decode
	if info.Format == imagefile.JPEG {
		decode = jpeg.Decode
	}
	img, err := decode(f)
	if err != nil {
		t.why = "unreadable"
		return t
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, shrink(img, thumbSide), &jpeg.Options{Quality: thumbQuality}); err != nil {
		t.why = "unreadable"
		return t
	}
	t.src = dataURI("image/jpeg", buf.Bytes())
	return t
}

// whyUnread says in a word or two why an image could not be read; the OS's
// own message would differ between systems.
func whyUnread(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "missing"
	case errors.Is(err, fs.ErrPermission):
		return "not readable"
	case errors.Is(err, imagefile.ErrFormat):
		return "not an image"
	}
	return "unreadable"
}

func dataURI(mediaType string, data []byte) template.URL {
	// The URI is built here from bytes we encoded, never from the report's
	// text, so it is safe to mark as a URL.
	return template.URL("data:" + mediaType + ";base64," + base64.StdEncoding.EncodeToString(data))
}

// shrink returns src scaled to fit side×side pixels (never enlarged), each
// pixel the average of the source pixels it covers, and made opaque over a
// light checkerboard where src is translucent (JPEG has no alpha).
func shrink(src image.Image, side int) *image.RGBA {
	rgba, ok := src.(*image.RGBA)
	if !ok {
		// draw has fast paths from the decoders' NRGBA, YCbCr and Gray.
		rgba = image.NewRGBA(image.Rect(0, 0, src.Bounds().Dx(), src.Bounds().Dy()))
		draw.Draw(rgba, rgba.Rect, src, src.Bounds().Min, draw.Src)
	}
	w, h := fit(rgba.Rect.Dx(), rgba.Rect.Dy(), side)
	dst := boxScale(rgba, w, h)
	flatten(dst)
	return dst
}

// fit returns w×h scaled to at most side pixels on its long side, keeping
// its aspect ratio (each side at least 1); sizes that fit are kept.
func fit(w, h, side int) (int, int) {
	switch {
	case w <= side && h <= side:
		return w, h
	case w >= h:
		return side, max(1, (h*side+w/2)/w)
	}
	return max(1, (w*side+h/2)/h), side
}

// boxScale shrinks src to w×h (each no larger than src's): each output pixel
// is the rounded mean of the block of source pixels it covers, in
// premultiplied colour so transparent pixels do not darken their
// neighbours. Integer arithmetic makes it the same on every machine.
func boxScale(src *image.RGBA, w, h int) *image.RGBA {
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	xs := make([]int, w+1) // source column where output column x starts
	for x := range xs {
		xs[x] = x * sw / w
	}
	sums := make([]uint64, 4*w)
	for y := range h {
		y0, y1 := y*sh/h, (y+1)*sh/h
		clear(sums)
		for sy := y0; sy < y1; sy++ {
			off := src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+sy)
			row := src.Pix[off : off+4*sw]
			for x := range w {
				s := sums[4*x : 4*x+4]
				for sx := xs[x]; sx < xs[x+1]; sx++ {
					p := row[4*sx : 4*sx+4]
					s[0] += uint64(p[0])
					s[1] += uint64(p[1])
					s[2] += uint64(p[2])
					s[3] += uint64(p[3])
				}
			}
		}
		out := dst.Pix[y*dst.Stride : y*dst.Stride+4*w]
		for x := range w {
			n := uint64((xs[x+1] - xs[x]) * (y1 - y0))
			for c := range 4 {
				out[4*x+c] = uint8((sums[4*x+c] + n/2) / n)
			}
		}
	}
	return dst
}

// flatten makes img opaque, laying its translucent pixels over a light
// grey checkerboard, as image viewers show transparency.
func flatten(img *image.RGBA) {
	for y := range img.Rect.Dy() {
		for x := range img.Rect.Dx() {
			p := img.Pix[y*img.Stride+4*x : y*img.Stride+4*x+4]
			a := uint32(p[3])
			if a == 255 {
				continue
			}
			bg := uint32(255)
			if (x/checkerSquare+y/checkerSquare)%2 == 1 {
				bg = 214
			}
			for c := range 3 {
				p[c] = uint8(uint32(p[c]) + (bg*(255-a)+127)/255)
			}
			p[3] = 255
		}
	}
}
