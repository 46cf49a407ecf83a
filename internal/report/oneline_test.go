package report

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// oneLineByDefinition is what oneLine makes of s, by its definition: the words of s
// joined by single blanks, cut to max runes with "…".
func oneLineByDefinition(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); max > 0 && len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

func TestOneLine(t *testing.T) {
	tests := []struct {
		s    string
		max  int
		want string
	}{
		{"", 0, ""},
		{"a lighthouse at dusk", 0, "a lighthouse at dusk"},
		{" leading blank", 0, "leading blank"},
		{"trailing blank ", 0, "trailing blank"},
		{"two  blanks", 0, "two blanks"},
		{"a\nnew line\tand a tab", 0, "a new line and a tab"},
		{"no-break\u00a0space", 0, "no-break space"},
		{"   ", 0, ""},
		{"a lighthouse at dusk", 10, "a lightho…"},
		{"phare à l'aube", 7, "phare …"},
		{"狐狸在雪中", 3, "狐狸…"},
		{"狐狸在雪中", 5, "狐狸在雪中"},
	}
	for _, tt := range tests {
		if got := oneLine(tt.s, tt.max); got != tt.want || got != oneLineByDefinition(tt.s, tt.max) {
			t.Errorf("oneLine(%q, %d) = %q, want %q", tt.s, tt.max, got, tt.want)
		}
	}
}

// FuzzOneLine holds oneLine, which keeps a string that is one line
// already, to its definition.
func FuzzOneLine(f *testing.F) {
	for _, s := range []string{"", "a b", " a", "a  b", "a\tb", "é\u2028x", "\u0085", "a b "} {
		f.Add(s, 0)
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if !utf8.ValidString(s) || max < 0 || max > 1000 {
			t.Skip()
		}
		if got, want := oneLine(s, max), oneLineByDefinition(s, max); got != want {
			t.Errorf("oneLine(%q, %d) = %q, want %q", s, max, got, want)
		}
	})
}
