package report

import (
	"encoding/binary"
	"errors"
	"slices"

	"github.com/batch-tool/batch/internal/cost"
)

// A RunSpill keeps each job's row in a compact binary form, private to the
// process that writes it (a crash leaves the file, and the next run
// removes it unread): the renderers read every row again in each of their
// passes, and decoding JSON there cost most of a run's report. A row is
// RunJob's fields in their order: integers as varints, bools as one byte
// of flags, strings as their length (a uvarint) and bytes, slices as
// their length plus one (0 for nil, so that nil and empty stay apart) and
// their elements. TestSpillRowRoundTrip sets every field of RunJob, so a
// field added to RunJob but not here fails it.

// Bits of a row's flags byte.
const (
	rowResumed = 1 << iota
	rowCached
)

// appendSpillRow appends j's row to b.
func appendSpillRow(b []byte, j *RunJob) []byte {
	b = binary.AppendVarint(b, int64(j.Index))
	b = appendRowString(b, j.ID)
	b = appendRowString(b, j.Group)
	b = appendRowSlice(b, j.Vars, func(b []byte, v *Var) []byte {
		return appendRowString(appendRowString(b, v.Key), v.Value)
	})
	b = appendRowSlice(b, j.DependsOn, func(b []byte, id *string) []byte { return appendRowString(b, *id) })
	b = appendRowString(b, j.Engine)
	b = appendRowString(b, j.Service)
	b = appendRowString(b, j.Model)
	b = binary.AppendVarint(b, int64(j.Width))
	b = binary.AppendVarint(b, int64(j.Height))
	b = binary.AppendVarint(b, int64(j.Steps))
	b = appendRowString(b, j.AspectRatio)
	b = appendRowString(b, j.OutputFormat)
	b = appendRowSlice(b, j.Inputs, func(b []byte, in *Input) []byte {
		b = appendRowString(appendRowString(appendRowString(b, in.Field), in.Path), in.From)
		return binary.AppendVarint(b, int64(in.Index))
	})
	b = appendRowString(b, j.Prompt)
	b = appendRowString(b, j.NegativePrompt)
	b = appendRowSlice(b, j.Settings, func(b []byte, s *Setting) []byte {
		return appendRowString(appendRowString(b, s.Name), s.Value)
	})
	b = binary.AppendVarint(b, int64(j.Samples))
	b = appendRowString(b, j.Status)
	b = appendRowString(b, j.Failure)
	b = binary.AppendVarint(b, int64(j.Credits))
	b = binary.AppendVarint(b, int64(j.PossiblyBilledCredits))
	b = binary.AppendVarint(b, int64(j.Attempts))
	var flags byte
	if j.Resumed {
		flags |= rowResumed
	}
	if j.Cached {
		flags |= rowCached
	}
	b = append(b, flags)
	b = appendRowString(b, j.GenerationID)
	b = appendRowString(b, j.Error)
	b = appendRowString(b, j.Params)
	return appendRowSlice(b, j.Images, func(b []byte, img *Image) []byte {
		b = appendRowString(b, img.Path)
		b = binary.AppendUvarint(b, uint64(img.Seed))
		return appendRowString(appendRowString(appendRowString(b, img.FinishReason), img.SHA256), img.RequestID)
	})
}

func appendRowString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendRowSlice[T any](b []byte, xs []T, elem func([]byte, *T) []byte) []byte {
	if xs == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(xs))+1)
	for i := range xs {
		b = elem(b, &xs[i])
	}
	return b
}

// rowDecoder reads the fields of a row in the order appendSpillRow wrote
// them. Its strings are cut from one string of the row's bytes, so a row
// costs one allocation, and j's slices are reused.
type rowDecoder struct {
	b   []byte // the row
	s   string // the row's bytes as a string, which strings are cut from
	at  int    // the next field's offset
	bad bool   // a field ran past the row's end; every later read is zero
}

// decodeSpillRow sets j to the job of row, which appendSpillRow wrote,
// reusing j's slices.
func decodeSpillRow(row []byte, j *RunJob) error {
	d := rowDecoder{b: row, s: string(row)}
	j.Index = d.int()
	j.ID = d.str()
	j.Group = d.str()
	j.Vars = decodeRowSlice(&d, j.Vars, func(d *rowDecoder, v *Var) { v.Key, v.Value = d.str(), d.str() })
	j.DependsOn = decodeRowSlice(&d, j.DependsOn, func(d *rowDecoder, id *string) { *id = d.str() })
	j.Engine = d.str()
	j.Service = d.str()
	j.Model = d.str()
	j.Width = d.int()
	j.Height = d.int()
	j.Steps = d.int()
	j.AspectRatio = d.str()
	j.OutputFormat = d.str()
	j.Inputs = decodeRowSlice(&d, j.Inputs, func(d *rowDecoder, in *Input) {
		in.Field, in.Path, in.From, in.Index = d.str(), d.str(), d.str(), d.int()
	})
	j.Prompt = d.str()
	j.NegativePrompt = d.str()
	j.Settings = decodeRowSlice(&d, j.Settings, func(d *rowDecoder, s *Setting) { s.Name, s.Value = d.str(), d.str() })
	j.Samples = d.int()
	j.Status = d.str()
	j.Failure = d.str()
	j.Credits = cost.Credits(d.varint())
	j.PossiblyBilledCredits = cost.Credits(d.varint())
	j.Attempts = d.int()
	flags := d.byte()
	j.Resumed, j.Cached = flags&rowResumed != 0, flags&rowCached != 0
	j.GenerationID = d.str()
	j.Error = d.str()
	j.Params = d.str()
	j.Images = decodeRowSlice(&d, j.Images, func(d *rowDecoder, img *Image) {
		img.Path, img.Seed = d.str(), uint32(d.uvarint())
		img.FinishReason, img.SHA256, img.RequestID = d.str(), d.str(), d.str()
	})
	if d.bad || d.at != len(d.b) {
		return errors.New("malformed row") // the file was changed under the spill
	}
	return nil
}

// decodeRowSlice reads a slice into xs's array, elem reading each element.
func decodeRowSlice[T any](d *rowDecoder, xs []T, elem func(*rowDecoder, *T)) []T {
	n := d.uvarint()
	switch {
	case n == 0:
		return nil
	case n-1 > uint64(len(d.b)-d.at): // each element takes a byte at least
		d.fail()
		return nil
	case xs == nil:
		xs = []T{} // empty, not nil, even with no element
	}
	// Every element is read whole, so what the array held goes.
	xs = slices.Grow(xs[:0], int(n-1))[:n-1]
	for i := range xs {
		elem(d, &xs[i])
	}
	return xs
}

func (d *rowDecoder) fail() {
	d.bad, d.at = true, len(d.b)
}

func (d *rowDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b[d.at:])
	if n <= 0 {
		d.fail()
		return 0
	}
	d.at += n
	return v
}

func (d *rowDecoder) varint() int64 {
	v, n := binary.Varint(d.b[d.at:])
	if n <= 0 {
		d.fail()
		return 0
	}
	d.at += n
	return v
}

func (d *rowDecoder) int() int { return int(d.varint()) }

func (d *rowDecoder) byte() byte {
	if d.at >= len(d.b) {
		d.fail()
		return 0
	}
	d.at++
	return d.b[d.at-1]
}

func (d *rowDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)-d.at) {
		d.fail()
		return ""
	}
	s := d.s[d.at : d.at+int(n)]
	d.at += int(n)
	return s
}
