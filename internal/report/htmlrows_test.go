package report

import (
	"html/template"
	"strings"
	"testing"
)

// escapeSeeds are strings that put every escape of htmlWriter to work:
// characters text escapes, schemes url refuses or keeps, percent escapes
// whole and cut, UTF-8 valid and not.
var escapeSeeds = []string{
	"", "a fox", `<script>&'"+` + "\x00", "javascript:alert(1)", "JavaScript:x", "vbscript:", ":x",
	"http://a/b?c=d&e=f+g#h", "HTTPS://x", "mailto:a@b.c", "data:image/png;base64,AB+/=",
	"/path:with/colon", "a/b:c", "images/a b.webp", "100%", "%zz", "%4", "%41", "x%4f", "%%41",
	"é — 狐 🦊", "bad \xff\xfe\xe2<", "\u2028\u2029\ufdd0\uffff", "[]{}|\\^`!#$*,;=?@~-._",
	"\t\n\r\x1b\x7f",
}

// escapesTemplate puts a value in each context htmlWriter writes values
// in.
func escapesTemplate() *template.Template {
	return template.Must(template.New("").Parse(
		`<p title="{{.S}}">{{.S}}</p><a href="{{.S}}"><img src="{{.U}}" width="{{.N}}" style="aspect-ratio:{{.N}}/{{.N}}"></a>`))
}

// viaTemplate is what tmpl (escapesTemplate) writes for s and n.
func viaTemplate(t testing.TB, tmpl *template.Template, s string, n int) string {
	t.Helper()
	var b strings.Builder
	err := tmpl.Execute(&b, struct {
		S string
		U template.URL
		N int
	}{s, template.URL(s), n})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// viaWriter is viaTemplate's markup written by htmlWriter.
func viaWriter(s string, n int) string {
	var w htmlWriter
	w.raw(`<p title="`).text(s).raw(`">`).text(s).raw(`</p><a href="`).url(s, false).raw(`"><img src="`).url(s, true).
		raw(`" width="`).int(n).raw(`" style="aspect-ratio:`).int(n).raw("/").int(n).raw(`"></a>`)
	return string(w.b)
}

// TestHTMLWriterEscapes holds htmlWriter's escaping to html/template's, in text,
// in attributes, in URLs (strings and template.URL) and in CSS.
func TestHTMLWriterEscapes(t *testing.T) {
	tmpl := escapesTemplate()
	for i, s := range escapeSeeds {
		n := []int{0, 7, -3, 1 << 40}[i%4]
		if got, want := viaWriter(s, n), viaTemplate(t, tmpl, s, n); got != want {
			t.Errorf("htmlWriter of %q, %d =\n%s\nwant (html/template)\n%s", s, n, got, want)
		}
	}
}

// FuzzHTMLWriterEscapes holds htmlWriter's escaping to html/template's on any
// string.
func FuzzHTMLWriterEscapes(f *testing.F) {
	for i, s := range escapeSeeds {
		f.Add(s, i)
	}
	tmpl := escapesTemplate()
	f.Fuzz(func(t *testing.T, s string, n int) {
		if got, want := viaWriter(s, n), viaTemplate(t, tmpl, s, n); got != want {
			t.Errorf("htmlWriter of %q, %d =\n%s\nwant (html/template)\n%s", s, n, got, want)
		}
	})
}

// TestHTMLRowsChunks: the rows come in chunks of about htmlChunk bytes,
// every row whole and in order, and stop when the template stops.
func TestHTMLRowsChunks(t *testing.T) {
	row := strings.Repeat("x", 1000)
	rows := make([]string, 100)
	for i := range rows {
		rows[i] = row
	}
	seq := htmlRows(func(yield func(string) bool) {
		for _, r := range rows {
			if !yield(r) {
				return
			}
		}
	}, func(w *htmlWriter, r string) { w.raw(r).raw("\n") })
	var chunks []template.HTML
	for c := range seq {
		chunks = append(chunks, c)
	}
	var all strings.Builder
	for i, c := range chunks {
		all.WriteString(string(c))
		if i < len(chunks)-1 && (len(c) < htmlChunk || len(c) > htmlChunk+len(row)+1) {
			t.Errorf("chunk %d has %d bytes, want %d to %d", i, len(c), htmlChunk, htmlChunk+len(row)+1)
		}
	}
	if want := strings.Repeat(row+"\n", len(rows)); all.String() != want {
		t.Errorf("the chunks hold %d bytes, want the %d of the rows in order", all.Len(), len(want))
	}
	n := 0
	for range seq {
		n++
		break
	}
	if n != 1 {
		t.Errorf("ranging once and stopping took %d chunks, want 1", n)
	}
}
