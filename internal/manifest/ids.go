package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Id lengths, in bytes.
const (
	maxIDLen      = 100 // any job id
	maxDerivedLen = 40  // the prompt-derived part of a base id
)

// slug lowercases s and keeps a-z, 0-9, '.' and '_', turning every other
// run of characters into one '-'; it trims '-' and '.' from both ends.
func slug(s string) string {
	b := make([]byte, 0, len(s))
	dash := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' {
			if dash && len(b) > 0 {
				b = append(b, '-')
			}
			b = append(b, c)
			dash = false
			continue
		}
		dash = true
	}
	return strings.Trim(string(b), "-.")
}

// slugWords makes a base id from a prompt: its first words, slugged and
// joined by '-', at most maxDerivedLen bytes; "job" when nothing is left.
func slugWords(text string) string {
	var b strings.Builder
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9')
	}) {
		switch {
		case b.Len() == 0:
			b.WriteString(w[:min(len(w), maxDerivedLen)])
		case b.Len()+1+len(w) <= maxDerivedLen:
			b.WriteByte('-')
			b.WriteString(w)
		default:
			return b.String()
		}
	}
	if b.Len() == 0 {
		return "job"
	}
	return b.String()
}

// shortHash returns the first n hex digits of the SHA-256 of s.
func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// varsCanon is the text a matrix row's hash id is computed from.
func varsCanon(vars []Var) string {
	var b strings.Builder
	for _, v := range vars {
		b.WriteString(v.Key)
		b.WriteByte('=')
		b.WriteString(v.Value)
		b.WriteByte(0)
	}
	return b.String()
}

// appendRowID appends base-slug1-slug2... for the matrix row idx to buf.
// It reports false, leaving buf as it was, when a value slugs to nothing or
// the id would be too long, so the caller falls back to a hash.
func appendRowID(buf []byte, base string, keys []mkey, idx []int) ([]byte, bool) {
	start := len(buf)
	buf = append(buf, base...)
	for d := range keys {
		s := keys[d].slugs[idx[d]]
		if s == "" || len(buf)-start+1+len(s) > maxIDLen {
			return buf[:start], false
		}
		buf = append(buf, '-')
		buf = append(buf, s...)
	}
	return buf, true
}

// baseIDs gives every plan its base id: the explicit id lowercased, or a
// slug of its first positive prompt. Derived ids that collide (with each
// other or an explicit id) get a hash of the job's settings; two derived
// jobs with the same settings are reported as duplicates.
func (p *parser) baseIDs(plans []*plan) {
	explicit := map[string]bool{}
	for _, pl := range plans {
		if pl.e.id != "" {
			explicit[strings.ToLower(pl.e.id)] = true
		}
	}
	derived := map[string][]*plan{}
	var order []string
	for _, pl := range plans {
		if pl.e.id != "" {
			pl.base = strings.ToLower(pl.e.id)
			continue
		}
		pl.base = slugWords(pl.firstText())
		if _, seen := derived[pl.base]; !seen {
			order = append(order, pl.base)
		}
		derived[pl.base] = append(derived[pl.base], pl)
	}
	for _, d := range order {
		group := derived[d]
		if len(group) == 1 && !explicit[d] {
			continue
		}
		byHash := map[string]*plan{}
		for _, pl := range group {
			h := shortHash(pl.canon(), 8)
			if first, dup := byHash[h]; dup {
				p.addf(pl.e.node, "%s: duplicate job: same settings as %s at %d:%d; remove one or give them ids", pl.e.path, first.e.path, first.e.node.Line, first.e.node.Column)
				continue
			}
			byHash[h] = pl
			pl.base = d + "-" + h
		}
	}
	for _, pl := range plans {
		pl.proto.Base = pl.base
	}
}

// firstText is the text of the first positive prompt (for a prompt from
// the matrix, its first value).
func (pl *plan) firstText() string {
	for _, sl := range pl.slots {
		if sl.weight <= 0 {
			continue
		}
		if sl.key >= 0 {
			return pl.e.keys[sl.key].vals[0].text
		}
		return sl.t.text
	}
	return ""
}

// canon is a canonical text of everything that makes the job: it tells
// truly identical jobs apart from ones that merely start alike.
func (pl *plan) canon() string {
	var b strings.Builder
	for _, sl := range pl.slots {
		b.WriteString(sl.t.text)
		b.WriteByte(0)
		b.WriteString(strconv.FormatFloat(sl.weight, 'g', -1, 64))
		b.WriteByte(0)
		b.WriteString(strconv.Itoa(sl.key))
		b.WriteByte(1)
	}
	for s := range numSettings {
		if s == sPrompt || s == sNegative || s == sPrompts {
			continue
		}
		b.WriteString(settingNames[s])
		b.WriteByte('=')
		b.WriteString(pl.r[s].text)
		b.WriteByte(1)
	}
	for _, k := range pl.e.keys {
		b.WriteString(k.name)
		for _, v := range k.vals {
			b.WriteByte(0)
			b.WriteString(v.text)
		}
		b.WriteByte(1)
	}
	return b.String()
}
