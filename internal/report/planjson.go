package report

import (
	"strconv"
	"unicode/utf8"
)

// jobRequest is what a job asks of the API, as PlanJob and RunJob both
// carry it, in their field order from Engine to Samples.
type jobRequest struct {
	engine, service, model    string
	width, height, steps      int
	aspectRatio, outputFormat string
	inputs                    []Input
	prompt, negativePrompt    string
	settings                  []Setting
	samples                   int
}

// appendRequest appends the JSON fields of r, from "engine" to "samples",
// as json.Marshal writes them in a PlanJob or a RunJob.
func appendRequest(b []byte, r jobRequest) []byte {
	b = appendOmitEmpty(b, "engine", r.engine)
	b = appendOmitEmpty(b, "service", r.service)
	b = appendOmitEmpty(b, "model", r.model)
	b = append(b, `,"width":`...)
	b = strconv.AppendInt(b, int64(r.width), 10)
	b = append(b, `,"height":`...)
	b = strconv.AppendInt(b, int64(r.height), 10)
	if r.steps != 0 {
		b = append(b, `,"steps":`...)
		b = strconv.AppendInt(b, int64(r.steps), 10)
	}
	b = appendOmitEmpty(b, "aspect_ratio", r.aspectRatio)
	b = appendOmitEmpty(b, "output_format", r.outputFormat)
	b = appendArray(b, "inputs", r.inputs, appendInput)
	b = appendField(b, "prompt", r.prompt)
	b = appendOmitEmpty(b, "negative_prompt", r.negativePrompt)
	b = appendArray(b, "settings", r.settings, appendSetting)
	b = append(b, `,"samples":`...)
	return strconv.AppendInt(b, int64(r.samples), 10)
}

// appendPlanJob appends j's JSON, byte for byte as json.Marshal writes it
// (its fields in order, omitempty, strings escaped as encoding/json does,
// HTML characters included), without reflection: the JSON of a plan of
// millions of jobs with long prompts is mostly this, and json.Marshal's
// per-byte string loop made it several times slower. TestPlanJobJSON holds
// it to json.Marshal with every field set, so that a field added to PlanJob
// without being added here fails.
func appendPlanJob(b []byte, j *PlanJob) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(j.Index), 10)
	b = appendField(b, "id", j.ID)
	b = appendField(b, "group", j.Group)
	b = appendArray(b, "depends_on", j.DependsOn, appendJSONString)
	b = appendRequest(b, jobRequest{j.Engine, j.Service, j.Model, j.Width, j.Height, j.Steps, j.AspectRatio, j.OutputFormat,
		j.Inputs, j.Prompt, j.NegativePrompt, j.Settings, j.Samples})
	b = append(b, `,"credits":`...)
	b = append(b, j.Credits.String()...) // Credits.MarshalJSON
	if j.Cached {
		b = append(b, `,"cached":true`...)
	}
	return append(b, '}')
}

// appendInput appends in's JSON, as json.Marshal writes it.
func appendInput(b []byte, in Input) []byte {
	b = append(b, `{"field":`...)
	b = appendJSONString(b, in.Field)
	b = appendOmitEmpty(b, "path", in.Path)
	b = appendOmitEmpty(b, "from", in.From)
	if in.Index != 0 {
		b = append(b, `,"index":`...)
		b = strconv.AppendInt(b, int64(in.Index), 10)
	}
	return append(b, '}')
}

// appendSetting appends s's JSON, as json.Marshal writes it.
func appendSetting(b []byte, s Setting) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONString(b, s.Name)
	b = appendField(b, "value", s.Value)
	return append(b, '}')
}

// appendField appends `,"key":` and s as a JSON string.
func appendField(b []byte, key, s string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, s)
}

// appendOmitEmpty is appendField, or nothing when s is "" (omitempty).
func appendOmitEmpty(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendField(b, key, s)
}

// skipPlain returns the index, from i on, of the first 8 bytes of s that
// are not all ASCII that encoding/json writes as they are (0x20–0x7F but
// " \ < > &), or of the last under 8 bytes of s. A word holding a $ stops
// it too: one test finds " and & by setting bit 2 of every byte, which
// also makes $ an &. That only sends the word the slow way.
func skipPlain(s string, i int) int {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8]
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		// A byte's high bit ends up set in m when the byte is ≥ 0x80,
		// < 0x20, or (v-ones)&^v finds it 0 after the xor with a
		// character searched for.
		m := x | (x-ones*0x20)&^x
		v := (x | ones*0x04) ^ ones*'&' // " or &
		m |= (v - ones) &^ v
		v = (x | ones*0x02) ^ ones*'>' // < or >
		m |= (v - ones) &^ v
		v = x ^ ones*'\\'
		m |= (v - ones) &^ v
		if m&high != 0 {
			return i
		}
	}
	return i
}

// plain reports whether encoding/json writes the ASCII byte c as it is.
func plain(c byte) bool {
	return c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaped as json.Marshal
// escapes it: \" \\ \b \f \n \r \t, other control characters and < > &
// as \u00XX, invalid UTF-8 as \ufffd, U+2028 and U+2029 as \u2028 and
// \u2029. Runs of plain ASCII are skipped 8 bytes at a time.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i = skipPlain(s, i); i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if plain(c) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			start = i + size
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			start = i + size
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendArray appends ,"key":[…] with each element of xs as elem appends
// it, as json.Marshal writes a slice with omitempty: nothing when xs is
// empty.
func appendArray[T any](b []byte, key string, xs []T, elem func([]byte, T) []byte) []byte {
	if len(xs) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, `":[`...)
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = elem(b, x)
	}
	return append(b, ']')
}
