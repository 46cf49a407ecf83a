package cost

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/engine"
)

// DefaultSheet is the id of the price sheet used when a manifest names none:
// today's prices, SDXL 1.0 on v1 and every Stable Image service.
const DefaultSheet = "stability-2025-08"

// ErrNoPrice reports a job a price sheet cannot price: no rule matches its
// engine, or its service and model; its size lies outside the rule's range;
// or its engine was retired before the sheet's date (then the error also
// matches ErrRetired). An unpriced job is an error, never a silent zero.
var ErrNoPrice = errors.New("no price")

// ErrRetired reports a v1 engine retired before the date a sheet took
// effect. Errors that match it also match ErrNoPrice.
var ErrRetired = errors.New("engine retired")

// priceError is a job a sheet cannot price, with the text that says what
// would price it. It matches ErrNoPrice, and ErrRetired when retired is set.
type priceError struct {
	msg     string
	retired bool
}

func (e *priceError) Error() string { return e.msg }

func (e *priceError) Is(target error) bool {
	return target == ErrNoPrice || e.retired && target == ErrRetired
}

//go:embed sheets/*.yaml
var embedded embed.FS

// Sheet is a dated set of price rules. The first rule whose engines match a
// v1 job's engine, or whose services and models match a Stable Image job's,
// prices the job. A Sheet is read-only once built and safe for concurrent
// use; Sheets and LookupSheet return fresh copies.
type Sheet struct {
	ID    string // e.g. "stability-2025-08"
	Title string // one line for people
	// EffectiveFrom is the first day the prices applied, as YYYY-MM-DD
	// (validated, so it sorts by date); "" in an override file that gives none.
	EffectiveFrom string
	// EffectiveTo is the last day the prices are known to have applied, as
	// YYYY-MM-DD; "" while they are current.
	EffectiveTo string
	Source      string // where the prices come from (repository and path, or URL)
	Notes       string // caveats: approximate dates, gaps, withdrawals; "" when none
	// Overrides is the path of the override file merged in by WithOverrides;
	// "" when none.
	Overrides string
	Rules     []Rule // in precedence order; override rules first
}

// Kind names the formula a Rule applies.
type Kind string

// The rule kinds. Every amount is in credits per image (v1) or per
// successful result (Stable Image services, which only flat rules price).
const (
	// KindTable is steps/base_steps × f(width×height), with f interpolated
	// linearly over pixel count between knots; sizes outside the knots have
	// no price.
	KindTable Kind = "table"
	// KindPixelSteps is (width×height − pixel_offset) × steps/base_steps × rate.
	KindPixelSteps Kind = "pixel_steps"
	// KindStepPoly is exact[steps] when listed, else the polynomial
	// coefficients[0] + coefficients[1]·steps + coefficients[2]·steps² + …
	KindStepPoly Kind = "step_poly"
	// KindStepLinear is credits up to base_steps, else credits × steps/base_steps.
	KindStepLinear Kind = "step_linear"
	// KindFlat is a fixed number of credits whatever the size and steps; the
	// only kind a services rule may have.
	KindFlat Kind = "flat"
)

// Rule prices the images of the v1 engines it names, or the results of the
// Stable Image services (and models) it names: one kind or the other, never
// both, so an engine pattern such as "*" never prices a service. Its
// parameters are unexported and immutable; Describe states them.
type Rule struct {
	// Engines are exact v1 engine ids or path.Match patterns such as "*" or
	// "stable-diffusion-xl-*"; nil in a services rule.
	Engines []string
	// Services are exact Stable Image service names such as "generate/core",
	// or path.Match patterns such as "edit/*"; nil in an engines rule.
	Services []string
	// Models narrow a services rule to jobs whose model (the model field,
	// e.g. "sd3.5-large") matches one of them, exactly or as a path.Match
	// pattern; nil matches every job of the services, with a model or not.
	Models []string
	Kind   Kind
	Source string // where the rule comes from; in override files FILE:LINE when not given
	Note   string // "" when none

	baseSteps    int64
	pixelOffset  int64
	rate         decimal
	credits      decimal
	knots        []knot
	exact        []exactPrice // sorted by steps
	coefficients []decimal
	round        roundMode
	roundTo      decimal
	roundStep    int64 // roundTo in micro-credits, ≥ 1
}

type knot struct {
	pixels  int64
	credits decimal
}

type exactPrice struct {
	steps   int64
	credits decimal
}

// Sheets returns every embedded price sheet, the current one first: newest
// first by EffectiveFrom, then by id.
func Sheets() []*Sheet {
	files, err := fs.Glob(embedded, "sheets/*.yaml")
	if err != nil {
		panic(err) // the pattern is constant and valid
	}
	sheets := make([]*Sheet, 0, len(files))
	for _, name := range files {
		data, err := embedded.ReadFile(name)
		if err == nil {
			var s *Sheet
			if s, err = parseSheet(name, data, false); err == nil {
				sheets = append(sheets, s)
				continue
			}
		}
		// The sheets are compiled in and every one is parsed by the tests.
		panic(fmt.Sprintf("embedded price sheet %s: %v", name, err))
	}
	slices.SortFunc(sheets, func(a, b *Sheet) int {
		if c := strings.Compare(b.EffectiveFrom, a.EffectiveFrom); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return sheets
}

// LookupSheet returns the embedded sheet with the given id; "" means
// DefaultSheet. An unknown id is an error that lists the known ones.
func LookupSheet(id string) (*Sheet, error) {
	if id == "" {
		id = DefaultSheet
	}
	sheets := Sheets()
	ids := make([]string, len(sheets))
	for i, s := range sheets {
		if s.ID == id {
			return s, nil
		}
		ids[i] = s.ID
	}
	return nil, fmt.Errorf("unknown price sheet %q (known: %s)", id, strings.Join(ids, ", "))
}

// Period describes the dates the sheet applies to, e.g.
// "2022-12-01 to 2023-10-02" or "from 2024-10-01". It is "" for an override
// file that gives no dates.
func (s *Sheet) Period() string {
	switch {
	case s.EffectiveFrom == "":
		return ""
	case s.EffectiveTo == "":
		return "from " + s.EffectiveFrom
	}
	return s.EffectiveFrom + " to " + s.EffectiveTo
}

// Describe explains the sheet for people (batch prices): its dates, source
// and notes, then each rule's engines or services and models, formula, note
// and source, in precedence order. It ends with a newline.
func (s *Sheet) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n", s.ID, s.Title)
	if p := s.Period(); p != "" {
		fmt.Fprintf(&b, "  in force: %s\n", p)
	}
	field(&b, "  ", "source", s.Source)
	field(&b, "  ", "notes", s.Notes)
	field(&b, "  ", "overrides", s.Overrides)
	b.WriteString("  rules, in order; the first that matches prices the job, in credits per v1\n")
	b.WriteString("  image or per successful Stable Image result:\n")
	for _, r := range s.Rules {
		if r.Services != nil {
			field(&b, "  - ", "services", strings.Join(r.Services, ", "))
			field(&b, "    ", "models", strings.Join(r.Models, ", "))
		} else {
			field(&b, "  - ", "engines", strings.Join(r.Engines, ", "))
		}
		field(&b, "    ", "price", r.Describe())
		field(&b, "    ", "note", r.Note)
		field(&b, "    ", "source", r.Source)
	}
	return b.String()
}

// field writes "indent name: text" wrapped at 80 columns, nothing when text
// is empty.
func field(b *strings.Builder, indent, name, text string) {
	if text == "" {
		return
	}
	line := indent + name + ":"
	for _, w := range strings.Fields(text) {
		if utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) > 80 && strings.TrimSpace(line) != name+":" {
			b.WriteString(line + "\n")
			line = strings.Repeat(" ", utf8.RuneCountInString(indent)+3)
		}
		line += " " + w
	}
	b.WriteString(line + "\n")
}

// WithOverrides returns a copy of s whose rules are o's followed by s's, so
// an override rule wins over a sheet rule for the same engine or service. A
// nil o returns s. Retirement still applies: an engine retired before s took
// effect has no price, whatever the overrides say.
func (s *Sheet) WithOverrides(o *Overrides) *Sheet {
	if o == nil {
		return s
	}
	c := *s
	c.Overrides = o.Path
	c.Rules = slices.Concat(o.Rules, s.Rules)
	return &c
}

// ImagePrice returns the credits one image of width×height pixels at the
// given steps costs on a v1 engine, rounded once as its rule says. An engine
// retired before the sheet took effect, an engine no rule matches, or a size
// outside a table is an error wrapping ErrNoPrice that names the sheets that
// would price it.
func (s *Sheet) ImagePrice(engine string, width, height, steps int) (Credits, error) {
	const most = 1 << 20 // keeps width×height×steps far from overflow
	if width <= 0 || height <= 0 || steps <= 0 || width > most || height > most || steps > most {
		return 0, fmt.Errorf("cannot price %dx%d at %d steps: size and steps must be from 1 to %d", width, height, steps, most)
	}
	if err := s.engineProblem(engine); err != nil {
		return 0, err
	}
	r, _ := s.engineRule(engine)
	price, err := r.price(int64(width), int64(height), int64(steps))
	if err == nil {
		var c Credits
		if c, err = microCredits(price, r.roundStep, r.round); err == nil {
			return c, nil
		}
	}
	return 0, fmt.Errorf("price %dx%d at %d steps on %s in sheet %q: %w", width, height, steps, engine, s.ID, err)
}

// engineProblem returns why the sheet cannot price any image of the engine:
// it was retired before the sheet took effect, or no rule matches it; nil
// when a rule prices it. The error names the sheets that would.
func (s *Sheet) engineProblem(engine string) error {
	if retired := s.retired(engine); retired != "" {
		others := s.pricedBy(func(o *Sheet) bool { return o.pricesEngine(engine) })
		return &priceError{msg: fmt.Sprintf("%s was retired %s%s", engine, retired, hint(others)), retired: true}
	}
	if _, ok := s.engineRule(engine); ok {
		return nil
	}
	known := "no engine"
	if e := s.engines(); len(e) > 0 {
		known = strings.Join(e, ", ")
	}
	more := ""
	if knownEngine(engine) { // a hint for a typo would point at the sheet whose "*" prices anything
		more = hint(s.pricedBy(func(o *Sheet) bool { return o.pricesEngine(engine) }))
	}
	return fmt.Errorf("%w for engine %q in sheet %q (it prices %s)%s", ErrNoPrice, engine, s.ID, known, more)
}

// ServicePrice returns the credits one successful result of a Stable Image
// service costs, e.g. ServicePrice("generate/sd3", "sd3.5-large"); model is
// the job's model field, "" when it sets none. A service and model no rule
// matches is an error wrapping ErrNoPrice that names the sheets that would
// price it.
func (s *Sheet) ServicePrice(service, model string) (Credits, error) {
	if service == "" {
		return 0, &priceError{msg: "cannot price a Stable Image job without a service"}
	}
	r, ok := s.serviceRule(service, model)
	if !ok {
		return 0, s.noServicePrice(service, model)
	}
	if r.Kind != KindFlat { // the parser allows no other kind
		return 0, fmt.Errorf("price %s in sheet %q: a services rule must be flat, not %s", service, s.ID, r.Kind)
	}
	c, err := microCredits(r.credits.rat, r.roundStep, r.round)
	if err != nil {
		return 0, fmt.Errorf("price %s in sheet %q: %w", service, s.ID, err)
	}
	return c, nil
}

// noServicePrice explains why no rule prices a service and model.
func (s *Sheet) noServicePrice(service, model string) error {
	var models []string // the models the sheet prices the service for
	for _, r := range s.Rules {
		if r.Models == nil || !matchAny(r.Services, service) {
			continue
		}
		for _, m := range r.Models {
			if !slices.Contains(models, m) {
				models = append(models, m)
			}
		}
	}
	what := service
	switch {
	case model != "":
		what += " with model " + model
	case len(models) > 0:
		what += " without a model"
	}
	msg := what + " has no price in " + s.ID
	if p := s.Period(); p != "" {
		msg += " (" + p + ")"
	}
	if len(models) > 0 {
		msg += ", which prices it for model " + strings.Join(models, ", ")
	}
	others := s.pricedBy(func(o *Sheet) bool {
		_, ok := o.serviceRule(service, model)
		return ok
	})
	return &priceError{msg: msg + hint(others)}
}

// retired returns the day the engine was retired when that is before the
// sheet took effect, else "".
func (s *Sheet) retired(id string) string {
	e, ok := engine.Lookup(id)
	if !ok || e.Retired == "" || s.EffectiveFrom == "" || s.EffectiveFrom <= e.Retired {
		return ""
	}
	return e.Retired
}

// knownEngine reports whether the v1 API has, or had, the engine.
func knownEngine(id string) bool {
	_, ok := engine.Lookup(id)
	return ok
}

// pricesEngine reports whether s has a rule for the engine and the engine
// was still served when s took effect.
func (s *Sheet) pricesEngine(id string) bool {
	_, ok := s.engineRule(id)
	return ok && s.retired(id) == ""
}

// pricedBy returns the ids of the embedded sheets other than s for which
// prices holds, the newest first.
func (s *Sheet) pricedBy(prices func(*Sheet) bool) []string {
	var ids []string
	for _, o := range Sheets() {
		if o.ID != s.ID && prices(o) {
			ids = append(ids, o.ID)
		}
	}
	return ids
}

// hint tells how to price a job with the sheets that can, newest first.
func hint(ids []string) string {
	switch len(ids) {
	case 0:
		return "; no embedded price sheet prices it"
	case 1:
		return "; price it with --pricing " + ids[0]
	}
	return fmt.Sprintf("; price it with --pricing %s (also priced by %s)", ids[0], strings.Join(ids[1:], ", "))
}

// engineRule returns the first engines rule matching the engine.
func (s *Sheet) engineRule(engine string) (*Rule, bool) {
	for i := range s.Rules {
		if matchAny(s.Rules[i].Engines, engine) {
			return &s.Rules[i], true
		}
	}
	return nil, false
}

// serviceRule returns the first services rule matching the service and
// model.
func (s *Sheet) serviceRule(service, model string) (*Rule, bool) {
	for i := range s.Rules {
		r := &s.Rules[i]
		if matchAny(r.Services, service) && (r.Models == nil || matchAny(r.Models, model)) {
			return r, true
		}
	}
	return nil, false
}

// engines lists the sheet's engine ids and patterns once each, in rule order.
func (s *Sheet) engines() []string {
	var all []string
	for _, r := range s.Rules {
		for _, e := range r.Engines {
			if !slices.Contains(all, e) {
				all = append(all, e)
			}
		}
	}
	return all
}

// matchAny reports whether name is one of patterns or matches one of them
// as a path.Match pattern. An empty name matches nothing.
func matchAny(patterns []string, name string) bool {
	if name == "" {
		return false
	}
	for _, p := range patterns {
		if p == name {
			return true
		}
		// Patterns were checked when the rule was read.
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// isPattern reports whether s holds path.Match metacharacters.
func isPattern(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// price returns the unrounded credits of one image.
func (r *Rule) price(width, height, steps int64) (*big.Rat, error) {
	switch r.Kind {
	case KindTable:
		px := width * height
		lo, hi := r.knots[0], r.knots[len(r.knots)-1]
		if px < lo.pixels || px > hi.pixels {
			return nil, fmt.Errorf("%w: %d pixels is outside the table's range, %d to %d pixels", ErrNoPrice, px, lo.pixels, hi.pixels)
		}
		i := 1
		for px > r.knots[i].pixels {
			i++
		}
		a, b := r.knots[i-1], r.knots[i]
		// f = a + (b − a)·(px − a.px)/(b.px − a.px)
		f := new(big.Rat).Sub(b.credits.rat, a.credits.rat)
		f.Mul(f, big.NewRat(px-a.pixels, b.pixels-a.pixels))
		f.Add(f, a.credits.rat)
		return f.Mul(f, big.NewRat(steps, r.baseSteps)), nil
	case KindPixelSteps:
		p := ratInt(width*height - r.pixelOffset)
		p.Mul(p, big.NewRat(steps, r.baseSteps))
		return p.Mul(p, r.rate.rat), nil
	case KindStepPoly:
		for _, e := range r.exact {
			if e.steps == steps {
				return new(big.Rat).Set(e.credits.rat), nil
			}
		}
		sum, pow := new(big.Rat), ratInt(1)
		for _, c := range r.coefficients {
			sum.Add(sum, new(big.Rat).Mul(c.rat, pow))
			pow.Mul(pow, ratInt(steps))
		}
		return sum, nil
	case KindStepLinear:
		p := new(big.Rat).Set(r.credits.rat)
		if steps > r.baseSteps {
			p.Mul(p, big.NewRat(steps, r.baseSteps))
		}
		return p, nil
	case KindFlat:
		return new(big.Rat).Set(r.credits.rat), nil
	}
	return nil, fmt.Errorf("unknown rule kind %q", r.Kind)
}

// Describe states the rule's formula in credits per image, with its
// rounding, e.g. "(width×height − 169527) × steps/30 × 2.16e-6, rounded up
// to 0.000001".
func (r Rule) Describe() string {
	var b strings.Builder
	switch r.Kind {
	case KindTable:
		fmt.Fprintf(&b, "steps/%d × f(width×height), f linear in pixels through ", r.baseSteps)
		for i, k := range r.knots {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%d→%s", k.pixels, k.credits)
		}
		fmt.Fprintf(&b, " (no price outside %d to %d pixels)", r.knots[0].pixels, r.knots[len(r.knots)-1].pixels)
	case KindPixelSteps:
		fmt.Fprintf(&b, "(width×height − %d) × steps/%d × %s", r.pixelOffset, r.baseSteps, r.rate)
	case KindStepPoly:
		for _, e := range r.exact {
			fmt.Fprintf(&b, "%s at %d steps, ", e.credits, e.steps)
		}
		if len(r.exact) > 0 {
			b.WriteString("else ")
		}
		for i, c := range r.coefficients {
			if i > 0 {
				b.WriteString(" + ")
			}
			b.WriteString(c.text)
			switch i {
			case 0:
			case 1:
				b.WriteString("·steps")
			case 2:
				b.WriteString("·steps²")
			default:
				fmt.Fprintf(&b, "·steps^%d", i)
			}
		}
	case KindStepLinear:
		fmt.Fprintf(&b, "%s up to %d steps, else %s × steps/%d", r.credits, r.baseSteps, r.credits, r.baseSteps)
	case KindFlat:
		fmt.Fprintf(&b, "%s flat", r.credits)
		if exactAt(r.credits.rat, r.roundStep) {
			return b.String()
		}
	}
	fmt.Fprintf(&b, ", rounded %s to %s", strings.ReplaceAll(r.round.String(), "_", "-"), r.roundTo)
	return b.String()
}

// exactAt reports whether credits is a whole number of step micro-credits.
func exactAt(credits *big.Rat, step int64) bool {
	q := new(big.Rat).Mul(credits, big.NewRat(int64(Credit), step))
	return q.IsInt()
}
