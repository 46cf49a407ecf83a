package cost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/manifest"
)

// Overrides are price rules read from a user's file (--prices FILE). Applied
// with Sheet.WithOverrides, they take precedence over the sheet's rules.
type Overrides struct {
	Path  string // the file they were read from, as given
	Rules []Rule // in file order; the first match wins
}

// maxOverridesSize is the largest price override file ReadOverrides reads,
// in bytes.
const maxOverridesSize = 16 << 20

// ReadOverrides reads an override file: YAML in the format of an embedded
// sheet, where only rules is required and a rule's source defaults to
// FILE:LINE. A rule names engines (any id, so a fine-tune can be priced) or
// services and models (which must name Stable Image services and their
// models, so a typo cannot silently leave the sheet's price in force).
// Every problem is reported at once, each as FILE:LINE:COL: message.
func ReadOverrides(name string) (*Overrides, error) {
	// Like a manifest: a regular file only (a named pipe would block), size
	// capped, and a bad byte reported at its line.
	data, err := manifest.ReadFile(context.Background(), name, maxOverridesSize)
	if err != nil {
		return nil, fmt.Errorf("read price overrides: %w", err)
	}
	if line, col, msg, ok := manifest.CheckText(data); !ok {
		return nil, fmt.Errorf("%s:%d:%d: %s", name, line, col, msg)
	}
	s, err := parseSheet(name, data, true)
	if err != nil {
		return nil, err
	}
	return &Overrides{Path: name, Rules: s.Rules}, nil
}

// sheetReader turns a YAML node tree into a Sheet, collecting every problem
// with its position. It reads the nodes itself, rather than decoding into
// structs, so that decimals keep their exact text and every error has a
// line and column.
type sheetReader struct {
	file     string
	override bool // an override file: only rules is required
	errs     []posError
}

// posError is a problem at a line and column of the file.
type posError struct {
	line, col int
	err       error
}

func (d *sheetReader) errorf(n *yaml.Node, format string, args ...any) {
	err := fmt.Errorf("%s:%d:%d: %s", d.file, n.Line, n.Column, fmt.Sprintf(format, args...))
	d.errs = append(d.errs, posError{n.Line, n.Column, err})
}

// err joins the problems found, in file order.
func (d *sheetReader) err() error {
	slices.SortStableFunc(d.errs, func(a, b posError) int {
		if a.line != b.line {
			return a.line - b.line
		}
		return a.col - b.col
	})
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}

var yamlLine = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// parseSheet reads one sheet document from data; file names it in errors.
func parseSheet(file string, data []byte, override bool) (*Sheet, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: price sheet is empty", file)
		}
		// yaml.v3 gives syntax errors a line but no column.
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("%s:%s: %s", file, m[1], m[2])
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: a price sheet must be a single YAML document", file)
	}
	d := &sheetReader{file: file, override: override}
	s := d.sheet(doc.Content[0])
	if err := d.err(); err != nil {
		return nil, err
	}
	return s, nil
}

func (d *sheetReader) sheet(n *yaml.Node) *Sheet {
	f := d.fields(n, "id", "title", "effective_from", "effective_to", "source", "notes", "rules")
	if f == nil {
		return nil
	}
	required := []string{"rules"}
	if !d.override {
		required = []string{"id", "title", "effective_from", "source", "rules"}
	}
	for _, k := range required {
		if f[k] == nil {
			d.errorf(n, "missing field %s", k)
		}
	}
	s := &Sheet{
		ID:            d.str(f["id"]),
		Title:         d.str(f["title"]),
		EffectiveFrom: d.date(f["effective_from"]),
		EffectiveTo:   d.date(f["effective_to"]),
		Source:        d.str(f["source"]),
		Notes:         d.str(f["notes"]),
	}
	if to := f["effective_to"]; to != nil && s.EffectiveTo != "" && s.EffectiveTo < s.EffectiveFrom {
		d.errorf(to, "effective_to %s is before effective_from", to.Value)
	}
	if rules := f["rules"]; rules != nil {
		for _, item := range d.seq(rules, "rules", "rule") {
			if r, ok := d.rule(item); ok {
				s.Rules = append(s.Rules, r)
			}
		}
	}
	return s
}

// kindFields lists the parameters each kind requires; the second list holds
// the optional ones.
var kindFields = map[Kind][2][]string{
	KindTable:      {{"base_steps", "knots"}, nil},
	KindPixelSteps: {{"pixel_offset", "base_steps", "rate"}, nil},
	KindStepPoly:   {{"coefficients"}, {"exact"}},
	KindStepLinear: {{"credits", "base_steps"}, nil},
	KindFlat:       {{"credits"}, nil},
}

var paramFields = []string{"base_steps", "knots", "pixel_offset", "rate", "coefficients", "exact", "credits"}

func (d *sheetReader) rule(n *yaml.Node) (Rule, bool) {
	before := len(d.errs)
	f := d.fields(n, append([]string{"engines", "services", "models", "kind", "source", "note", "round", "round_to"}, paramFields...)...)
	if f == nil {
		return Rule{}, false
	}
	r := Rule{Source: d.str(f["source"]), Note: d.str(f["note"]), round: roundUp, roundStep: 1}
	switch {
	case f["source"] != nil:
	case d.override:
		r.Source = fmt.Sprintf("%s:%d", d.file, n.Line)
	default:
		d.errorf(n, "missing field source")
	}

	engines, services := f["engines"], f["services"]
	switch {
	case engines != nil && services != nil:
		d.errorf(services, "a rule names engines or services, not both")
	case engines != nil:
		for _, item := range d.seq(engines, "engines", "engine id or pattern") {
			if p, ok := d.pattern(item, "engine"); ok {
				r.Engines = append(r.Engines, p)
			}
		}
	case services != nil:
		r.Services = d.services(services)
	default:
		d.errorf(n, "missing field engines or services")
	}
	if m := f["models"]; m != nil {
		if services == nil || engines != nil {
			d.errorf(m, "models apply only to a rule with services")
		} else {
			r.Models = d.models(m, r.Services)
		}
	}

	kindNode := f["kind"]
	if kindNode == nil {
		d.errorf(n, "missing field kind")
		return Rule{}, false
	}
	r.Kind = Kind(d.str(kindNode))
	want, ok := kindFields[r.Kind]
	if !ok {
		d.errorf(kindNode, "unknown rule kind %q (want table, pixel_steps, step_poly, step_linear or flat)", r.Kind)
		return Rule{}, false
	}
	if services != nil && r.Kind != KindFlat {
		d.errorf(kindNode, "a services rule must be kind flat, not %s: a Stable Image result costs the same whatever its size", r.Kind)
	}
	for _, k := range want[0] {
		if f[k] == nil {
			d.errorf(n, "missing field %s for kind %s", k, r.Kind)
		}
	}
	for _, k := range paramFields {
		if f[k] != nil && !slices.Contains(want[0], k) && !slices.Contains(want[1], k) {
			d.errorf(f[k], "field %s does not apply to kind %s", k, r.Kind)
		}
	}

	if v := f["base_steps"]; v != nil {
		var ok bool
		if r.baseSteps, ok = d.integer(v); ok && r.baseSteps < 1 {
			d.errorf(v, "base_steps must be at least 1")
		}
	}
	if v := f["pixel_offset"]; v != nil {
		var ok bool
		if r.pixelOffset, ok = d.integer(v); ok && r.pixelOffset < 0 {
			d.errorf(v, "pixel_offset must not be negative")
		}
	}
	if v := f["rate"]; v != nil {
		r.rate = d.decimal(v)
	}
	if v := f["credits"]; v != nil {
		if r.credits = d.decimal(v); r.credits.rat != nil && r.credits.rat.Sign() < 0 {
			d.errorf(v, "credits must not be negative")
		}
	}
	if v := f["coefficients"]; v != nil {
		for _, item := range d.seq(v, "coefficients", "number") {
			r.coefficients = append(r.coefficients, d.decimal(item))
		}
	}
	if v := f["exact"]; v != nil {
		r.exact = d.exact(v)
	}
	if v := f["knots"]; v != nil {
		r.knots = d.knots(v)
	}
	if v := f["round"]; v != nil {
		switch d.str(v) {
		case "up":
		case "half_up":
			r.round = roundHalfUp
		default:
			d.errorf(v, "round must be up or half_up, not %q", v.Value)
		}
	}
	r.roundTo = decimal{text: "0.000001", rat: big.NewRat(1, int64(Credit))}
	if v := f["round_to"]; v != nil {
		r.roundTo = d.decimal(v)
		if q := r.roundTo.rat; q != nil {
			micro := new(big.Rat).Mul(q, ratInt(int64(Credit)))
			if q.Sign() <= 0 || !micro.IsInt() || !micro.Num().IsInt64() {
				d.errorf(v, "round_to must be a positive multiple of 0.000001")
			} else {
				r.roundStep = micro.Num().Int64()
			}
		}
	}
	return r, d.ok(before)
}

// pattern reads an exact name or path.Match pattern; what names it in
// errors ("engine", "service", "model").
func (d *sheetReader) pattern(n *yaml.Node, what string) (string, bool) {
	p, ok := d.scalar(n, "a string")
	if !ok {
		return "", false
	}
	p = strings.TrimSpace(p)
	if _, err := path.Match(p, ""); err != nil || p == "" {
		d.errorf(n, "%s pattern %q is not a valid path.Match pattern", what, p)
		return "", false
	}
	return p, true
}

// services reads a rule's services: each must name, or as a pattern match,
// at least one Stable Image service of the catalogue.
func (d *sheetReader) services(n *yaml.Node) []string {
	var out []string
	all := catalog.Services()
	for _, item := range d.seq(n, "services", "service or pattern") {
		p, ok := d.pattern(item, "service")
		switch {
		case !ok:
		case slices.ContainsFunc(all, func(s string) bool { return matchAny([]string{p}, s) }):
			out = append(out, p)
		case isPattern(p):
			d.errorf(item, "service pattern %q matches no Stable Image service", p)
		default:
			d.errorf(item, "unknown service %q (want one of %s)", p, strings.Join(all, ", "))
		}
	}
	return out
}

// models reads a services rule's models: each must name, or as a pattern
// match, a value of the model field of one of the rule's services.
func (d *sheetReader) models(n *yaml.Node, services []string) []string {
	items := d.seq(n, "models", "model or pattern")
	if len(services) == 0 {
		return nil // the services were wrong, and said so
	}
	var known []string // in the catalogue's order
	for _, op := range catalog.All() {
		if f, ok := op.Field("model"); ok && matchAny(services, op.Service) {
			for _, m := range f.Enum {
				if !slices.Contains(known, m) {
					known = append(known, m)
				}
			}
		}
	}
	if len(known) == 0 {
		d.errorf(n, "models do not apply to %s, which takes no model", strings.Join(services, ", "))
		return nil
	}
	var out []string
	for _, item := range items {
		p, ok := d.pattern(item, "model")
		switch {
		case !ok:
		case slices.ContainsFunc(known, func(m string) bool { return matchAny([]string{p}, m) }):
			out = append(out, p)
		case isPattern(p):
			d.errorf(item, "model pattern %q matches no model of %s", p, strings.Join(services, ", "))
		default:
			d.errorf(item, "unknown model %q for %s (want one of %s)", p, strings.Join(services, ", "), strings.Join(known, ", "))
		}
	}
	return out
}

// ok reports whether no problem was found since the error count was before.
func (d *sheetReader) ok(before int) bool { return len(d.errs) == before }

func (d *sheetReader) knots(n *yaml.Node) []knot {
	items := d.seq(n, "knots", "point")
	if len(items) == 1 {
		d.errorf(n, "knots must list at least two points")
	}
	var ks []knot
	for _, item := range items {
		f := d.fields(item, "pixels", "credits")
		if f == nil {
			continue
		}
		if f["pixels"] == nil || f["credits"] == nil {
			d.errorf(item, "a knot needs pixels and credits")
			continue
		}
		px, ok := d.integer(f["pixels"])
		k := knot{pixels: px, credits: d.decimal(f["credits"])}
		switch {
		case !ok || k.credits.rat == nil:
		case k.credits.rat.Sign() < 0:
			d.errorf(f["credits"], "credits must not be negative")
		case k.pixels < 1:
			d.errorf(f["pixels"], "pixels must be at least 1")
		case len(ks) > 0 && k.pixels <= ks[len(ks)-1].pixels:
			d.errorf(f["pixels"], "knots must be in increasing order of pixels")
		}
		ks = append(ks, k)
	}
	return ks
}

func (d *sheetReader) exact(n *yaml.Node) []exactPrice {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "exact must map steps to credits, e.g. {30: 1.6}")
		return nil
	}
	var es []exactPrice
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		steps, _ := d.integer(k)
		e := exactPrice{steps: steps, credits: d.decimal(v)}
		if slices.ContainsFunc(es, func(o exactPrice) bool { return o.steps == e.steps }) {
			d.errorf(k, "steps %d listed twice", e.steps)
		}
		if e.credits.rat != nil && e.credits.rat.Sign() < 0 {
			d.errorf(v, "credits must not be negative")
		}
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b exactPrice) int { return int(a.steps - b.steps) })
	return es
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// fields returns a mapping's values by key, reporting unknown and repeated
// keys; it returns nil when n is not a mapping.
func (d *sheetReader) fields(n *yaml.Node, known ...string) map[string]*yaml.Node {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "expected a mapping of %s", strings.Join(known, ", "))
		return nil
	}
	f := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case !slices.Contains(known, k.Value):
			d.errorf(k, "unknown field %q (want one of %s)", k.Value, strings.Join(known, ", "))
		case f[k.Value] != nil:
			d.errorf(k, "field %s given twice", k.Value)
		default:
			f[k.Value] = v
		}
	}
	return f
}

// seq returns a list's items, reporting any other node, and an empty list
// as "field must list at least one what".
func (d *sheetReader) seq(n *yaml.Node, field, what string) []*yaml.Node {
	n = resolve(n)
	switch {
	case n.Kind != yaml.SequenceNode:
		d.errorf(n, "%s must be a list", field)
		return nil
	case len(n.Content) == 0:
		d.errorf(n, "%s must list at least one %s", field, what)
	}
	return n.Content
}

// scalar returns a scalar's text, reporting any other node.
func (d *sheetReader) scalar(n *yaml.Node, what string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, "expected %s", what)
		return "", false
	}
	return n.Value, true
}

func (d *sheetReader) str(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	s, _ := d.scalar(n, "a string")
	return strings.TrimSpace(s)
}

// integer reads a whole number small enough that products of two of them
// cannot overflow; ok is false after reporting a problem.
func (d *sheetReader) integer(n *yaml.Node) (v int64, ok bool) {
	s, ok := d.scalar(n, "an integer")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > 1<<30 || v < -1<<30 {
		d.errorf(n, "%q is not an integer between -2^30 and 2^30", s)
		return 0, false
	}
	return v, true
}

func (d *sheetReader) decimal(n *yaml.Node) decimal {
	s, ok := d.scalar(n, "a decimal number")
	if !ok {
		return decimal{}
	}
	v, err := parseDecimal(s)
	if err != nil {
		d.errorf(n, "%v", err)
	}
	return v
}

// date reads a YYYY-MM-DD date and returns it as written; "" when n is nil
// or not a valid date.
func (d *sheetReader) date(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	s, ok := d.scalar(n, "a date such as 2023-07-26")
	if !ok {
		return ""
	}
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		d.errorf(n, "%q is not a date such as 2023-07-26", s)
		return ""
	}
	return s
}
