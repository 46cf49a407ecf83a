package report

import (
	"html/template"
	"iter"
	"strconv"
	"strings"
)

// The page's long lists (the jobs table, the groups table, the images no
// pipeline or plot shows) have a row per job or group: a run of a million
// jobs has a million rows each. html/template would evaluate every field
// of every row by reflection, which cost more than the rest of the page,
// so these rows are written here, escaped byte for byte as html/template
// escapes the same markup in the same place, and the template writes them
// as HTML. TestHTMLWriterEscapes and FuzzHTMLWriterEscapes hold the
// escaping to html/template's; the golden pages hold the markup.

// htmlChunk is about how many bytes of rows htmlRows hands the template at
// once.
const htmlChunk = 32 << 10

// htmlRows is rows written by write, in chunks of about htmlChunk bytes for
// the template to range over: a list of a million rows is never held whole.
func htmlRows[T any](rows iter.Seq[T], write func(w *htmlWriter, row T)) iter.Seq[template.HTML] {
	return func(yield func(template.HTML) bool) {
		var w htmlWriter
		for row := range rows {
			write(&w, row)
			if len(w.b) >= htmlChunk {
				if !yield(template.HTML(w.b)) {
					return
				}
				w.b = w.b[:0]
			}
		}
		if len(w.b) > 0 {
			yield(template.HTML(w.b))
		}
	}
}

// htmlWriter appends markup and escaped values to a buffer.
type htmlWriter struct {
	b []byte
}

// raw appends markup as it is.
func (w *htmlWriter) raw(s string) *htmlWriter {
	w.b = append(w.b, s...)
	return w
}

// text appends s escaped as html/template escapes a string in text or in a
// quoted attribute value (its htmlEscaper and attrEscaper): NUL as U+FFFD,
// and " & ' + < > as character references. They are all ASCII, which no
// byte of a multi-byte UTF-8 sequence is, so bytes are replaced one by
// one, as html/template's loop over runes replaces them.
func (w *htmlWriter) text(s string) *htmlWriter {
	start := 0
	for i := 0; i < len(s); i++ {
		if r := htmlEscape(s[i]); r != "" {
			w.b = append(append(w.b, s[start:i]...), r...)
			start = i + 1
		}
	}
	w.b = append(w.b, s[start:]...)
	return w
}

// htmlEscape is what html/template writes for the byte c in text, or ""
// when it writes c as it is.
func htmlEscape(c byte) string {
	switch c {
	case 0:
		return "\uFFFD"
	case '"':
		return "&#34;"
	case '&':
		return "&amp;"
	case '\'':
		return "&#39;"
	case '+':
		return "&#43;"
	case '<':
		return "&lt;"
	case '>':
		return "&gt;"
	}
	return ""
}

// int appends n in decimal.
func (w *htmlWriter) int(n int) *htmlWriter {
	w.b = strconv.AppendInt(w.b, int64(n), 10)
	return w
}

// url appends s as html/template writes it in a quoted URL attribute (href,
// src): a string (not trusted) whose scheme is not http, https or mailto
// becomes "#ZgotmplZ"; a trusted one (a template.URL) is kept. Then every
// byte but letters, digits, - . _ ~, the reserved ! # $ & * + , / : ; = ?
// @ [ ] and a % that starts an escape is percent-encoded, and & and + are
// escaped as text.
func (w *htmlWriter) url(s string, trusted bool) *htmlWriter {
	if !trusted && !safeURL(s) {
		s = "#ZgotmplZ"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '&' || c == '+':
			w.b = append(w.b, htmlEscape(c)...)
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~!#$*,/:;=?@[]", c) >= 0,
			c == '%' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]):
			w.b = append(w.b, c)
		default:
			w.b = append(w.b, '%', hexDigits[c>>4], hexDigits[c&0xF])
		}
	}
	return w
}

// safeURL reports whether html/template writes the string s in a URL
// attribute: it has no scheme, or http, https or mailto.
func safeURL(s string) bool {
	scheme, _, ok := strings.Cut(s, ":")
	return !ok || strings.Contains(scheme, "/") ||
		strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https") || strings.EqualFold(scheme, "mailto")
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// row writes j's row of the jobs table; run adds a run's status, attempts
// and error, deps the From column.
func (j *htmlJob) row(w *htmlWriter, run, deps bool) {
	w.raw("\n<tr><td class=\"id\">").text(j.ID).raw("</td>")
	if deps {
		w.raw(`<td class="id">`).text(j.From).raw("</td>")
	}
	if run {
		w.raw(`<td class="st"><span class="badge `).text(j.Status).raw(`">`).text(j.Status).raw("</span>")
		if j.Failure != "" {
			w.raw(` <span class="muted">`).text(j.Failure).raw("</span>")
		}
		if j.Resumed {
			w.raw(` <span class="muted">resumed</span>`)
		}
		w.raw("</td>")
	}
	w.raw(`<td class="id">`).text(j.Operation).raw(`</td><td class="st">`).text(j.Settings).raw("</td>")
	if run {
		w.raw(`<td class="n">`).int(j.Attempts).raw("</td>")
	}
	w.raw(`<td class="n">`).text(j.Credits).raw("</td>")
	if run {
		w.raw(`<td class="err">`).text(j.Error).raw("</td>")
	}
	w.raw("</tr>")
}

// row writes g's row of the groups table; run adds a run's counts by
// status, deps the From column.
func (g *group) row(w *htmlWriter, run, deps bool) {
	w.raw("\n<tr><td>").text(g.Name).raw("</td>")
	if deps {
		w.raw("<td>").text(g.From()).raw("</td>")
	}
	w.raw(`<td class="n">`).int(g.Jobs).raw("</td>")
	if run {
		t := g.Totals
		w.raw(`<td class="n">`).int(t.Succeeded).raw(`</td><td class="n">`).int(t.Failed).
			raw(`</td><td class="n">`).int(t.Filtered).raw(`</td><td class="n">`).int(t.Skipped).raw("</td>")
	}
	w.raw("<td>").text(g.Operation()).raw("</td><td>").text(g.Sizes()).raw("</td><td>").text(g.Steps()).
		raw(`</td><td class="n">`).text(g.Credits.String()).raw("</td></tr>")
}

// figure writes t as an item of the page's images.
func (t *htmlThumb) figure(w *htmlWriter) {
	w.raw("\n<figure class=\"thumb ").text(t.Status).raw(`">`)
	t.img(w)
	w.raw("\n<figcaption><div class=\"row\"><span class=\"id\" title=\"").text(t.Job).raw(`">`).text(t.Job).raw("</span>")
	if t.Status != StatusSucceeded {
		w.raw(`<span class="badge `).text(t.Status).raw(`">`).text(t.Status).raw("</span>")
	}
	w.raw(`</div><div class="cr"`)
	if t.RequestID != "" {
		w.raw(` title="request `).text(t.RequestID).raw(`"`)
	}
	w.raw(">seed ").text(t.Seed).raw(" · job ").text(t.Credits).raw(" cr</div></figcaption></figure>")
}

// img writes t's image, linked to its file: the thumbnail, or a
// placeholder naming the file and why it has none.
func (t *htmlThumb) img(w *htmlWriter) {
	if t.Src == "" {
		w.raw(`<a class="noimg" href="`).url(t.Href, false).raw(`" title="`).text(t.Href).raw(`"><span>`).
			text(t.Href).raw("<br>").text(t.Why).raw("</span></a>")
		return
	}
	w.raw(`<a href="`).url(t.Href, false).raw(`"><img src="`).url(string(t.Src), true).
		raw(`" width="`).int(t.Width).raw(`" height="`).int(t.Height).
		raw(`" alt="`).text(t.Job).raw(", seed ").text(t.Seed).
		raw(`" style="aspect-ratio:`).int(t.Width).raw("/").int(t.Height).raw(`"`)
	if t.Title != "" {
		w.raw(` title="`).text(t.Title).raw(`"`)
	}
	w.raw("></a>")
}

// Img is t's image as img writes it, for the pipelines and plots of the
// page's template.
func (t htmlThumb) Img() template.HTML {
	var w htmlWriter
	t.img(&w)
	return template.HTML(w.b)
}
