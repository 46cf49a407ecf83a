package manifest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/imagefile"
	"gopkg.in/yaml.v3"
)

// An image input (image, mask, init_image, …) is a file path relative to
// the manifest's folder, or {from: JOB_ID, index: N}: the N-th image (1 when
// absent) another job of the manifest makes. A file is checked where it is
// written: it must be a regular file whose content is a PNG, JPEG or WebP
// image, and its size must fit the service's limits. The {from} references
// are resolved once every job has its id (see link).

// imageRef is an image input as written.
type imageRef struct {
	written string // the path as written, or the from text as written
	// path is the file, joined to the manifest's folder; "" for {from}.
	path string
	file *fileInfo // what the file holds; nil for {from}
	// from is the source job's id; its {placeholders} take the row's
	// values in id form (their slugs), so "hero-{style}" names a row of
	// a matrix over style.
	from  tmpl
	index int // which of from's images, 1-based; 0 when not written (1)
}

// canon is the input's canonical text: the matrix value, the slug source
// and what tells two values apart.
func (r *imageRef) canon() string {
	if r.path != "" {
		return r.written
	}
	s := "{from: " + r.written
	if r.index > 1 {
		s += ", index: " + strconv.Itoa(r.index)
	}
	return s + "}"
}

// slug is the input's part of a matrix row's id: the file's base name
// without its extension, or the from id (with its index past the first).
func (r *imageRef) slug() string {
	if r.path != "" {
		base := filepath.Base(filepath.FromSlash(r.written))
		return slug(strings.TrimSuffix(base, filepath.Ext(base)))
	}
	if r.index > 1 {
		return slug(r.written + "-" + strconv.Itoa(r.index))
	}
	return slug(r.written)
}

// idText is the input as words for a derived base id.
func (r *imageRef) idText() string {
	if r.path != "" {
		base := filepath.Base(filepath.FromSlash(r.written))
		return strings.TrimSuffix(base, filepath.Ext(base))
	}
	return r.written
}

// fileInfo is what a file named as an image input holds.
type fileInfo struct {
	w, h int   // pixels; 0 when the file is not a usable image
	size int64 // bytes
	// problem says why the file is not a usable image, e.g. "does not
	// exist"; "" when it is one.
	problem string
}

// imageKeys are the keys of a {from} mapping.
var imageKeys = []string{"from", "index"}

// maxIndex is the largest index a {from} may have: v1 jobs make at most 10
// images, Stable Image jobs one.
const maxIndex = 10

// image reads an image input: a file path, which it checks, or a {from}
// mapping. It reports false only when the value is malformed; a file that
// is missing or not an image is reported and still returned, so the job's
// other checks run.
func (p *parser) image(n *yaml.Node, path string) (*imageRef, bool) {
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		if strings.TrimSpace(n.Value) == "" {
			p.addf(n, "%s: must be a file path or {from: JOB_ID}, got an empty string", path)
			return nil, false
		}
		r := &imageRef{written: n.Value, path: n.Value}
		if !filepath.IsAbs(r.path) {
			r.path = filepath.Join(p.dir, filepath.FromSlash(r.path))
		}
		r.file = p.stat(r.path)
		if r.file.problem != "" {
			p.addf(n, "%s: %s %s", path, clip(n.Value, 80), r.file.problem)
		}
		return r, true
	case n.Kind == yaml.MappingNode:
		return p.fromRef(n, path)
	}
	p.addf(n, "%s: must be a file path or {from: JOB_ID}, got %s", path, describe(n))
	return nil, false
}

// fromRef reads {from: JOB_ID, index: N}.
func (p *parser) fromRef(n *yaml.Node, path string) (*imageRef, bool) {
	r := &imageRef{}
	kvs := p.pairs(n, path)
	ok, hasFrom := len(kvs)*2 == len(n.Content), false // a bad key was reported
	for _, kv := range kvs {
		switch kv.key {
		case "from":
			hasFrom = true
			tag := kv.v.ShortTag()
			if kv.v.Kind != yaml.ScalarNode || tag != "!!str" && tag != "!!int" {
				p.addf(kv.v, "%s.from: must be a job id, got %s", path, describe(kv.v))
				ok = false
				continue
			}
			if strings.TrimSpace(kv.v.Value) == "" {
				p.addf(kv.v, "%s.from: must be a job id, got an empty string", path)
				ok = false
				continue
			}
			r.written = kv.v.Value
			r.from = parseTmpl(kv.v.Value, kv.v)
		case "index":
			i, good := p.integer(kv.v, path+".index", 1, maxIndex)
			r.index = int(i)
			ok = ok && good
		default:
			p.addf(kv.k, "%s: unknown key%s; an image from another job is {from: JOB_ID} or {from: JOB_ID, index: N}", join(path, kv.key), suggest(kv.key, imageKeys))
			ok = false
		}
	}
	if !hasFrom {
		p.addf(n, "%s: missing from; an image from another job is {from: JOB_ID} or {from: JOB_ID, index: N}", path)
		ok = false
	}
	return r, ok
}

// stat checks the file at path once per manifest, however many jobs name it.
func (p *parser) stat(path string) *fileInfo {
	if fi, ok := p.files[path]; ok {
		return fi
	}
	fi := p.statFile(path)
	p.files[path] = fi
	return fi
}

// statImage checks that path is a regular file holding a PNG, JPEG or WebP
// image and reads its size from its header. It looks at the file's type
// before opening it, so a named pipe or a device never blocks the load.
func statImage(path string) *fileInfo {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &fileInfo{problem: "does not exist"}
	case err != nil:
		return &fileInfo{problem: "cannot be read: " + cause(err)}
	case st.IsDir():
		return &fileInfo{problem: "is a directory, not an image file"}
	case !st.Mode().IsRegular():
		return &fileInfo{problem: "is not a regular file (" + fileKind(st.Mode()) + ")"}
	}
	info, size, err := imagefile.Stat(path)
	switch {
	case errors.Is(err, imagefile.ErrFormat):
		return &fileInfo{problem: "is not a PNG, JPEG or WebP image"}
	case errors.As(err, new(*fs.PathError)):
		return &fileInfo{problem: "cannot be read: " + cause(err)}
	case err != nil:
		return &fileInfo{problem: "is not a readable image: " + err.Error()}
	}
	return &fileInfo{w: info.Width, h: info.Height, size: size}
}

// cause is an I/O error without the path, which the message names already.
func cause(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// fileKind names a file type that is not a regular file.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// sizeText is a byte count for messages: "10.2 MiB".
func sizeText(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}
