package manifest

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/catalog"
	"gopkg.in/yaml.v3"
)

// refusal says why batch refuses a setting wherever it is written, or "":
// a derived field, which batch computes from the image inputs.
func refusal(sp spec, ops []catalog.Operation) string {
	if sp.kind != kDerived {
		return ""
	}
	var from []string
	for i := range ops {
		if _, ok := ops[i].Field(sp.name); ok {
			for _, in := range ops[i].Images() {
				if !slices.Contains(from, in) {
					from = append(from, in)
				}
			}
		}
	}
	return sp.name + " is derived from " + orList(from) + "; batch sets it, so leave it out"
}

// service checks that a service name is in the catalogue.
func (p *parser) service(n *yaml.Node, path, name string) bool {
	if _, ok := catalog.Lookup(name); !ok {
		all := catalog.Services()
		p.addf(n, "%s: unknown service %q%s; known services: %s", path, name, suggest(name, all), strings.Join(all, ", "))
		return false
	}
	return true
}

// opInfo is a Stable Image operation with its fields found by setting.
type opInfo struct {
	op *catalog.Operation
	// fields holds, by setting, the field the operation takes; nil where
	// it takes none (derived fields are not taken: batch sets them).
	fields []*catalog.Field
	sets   []setting // the setting of each of op.Fields
}

// opInfo returns the operation of a service, built once per manifest.
func (p *parser) opInfo(service string) *opInfo {
	if o, ok := p.opInfos[service]; ok {
		return o
	}
	op, _ := catalog.Lookup(service)
	o := &opInfo{op: op, fields: make([]*catalog.Field, len(settings.specs)), sets: make([]setting, len(op.Fields))}
	for i := range op.Fields {
		f := &op.Fields[i]
		s := settings.byName[f.Name]
		o.sets[i] = s
		if !f.Derived {
			o.fields[s] = f
		}
	}
	p.opInfos[service] = o
	return o
}

// field returns the operation's field for s, or nil when it does not take s.
func (o *opInfo) field(s setting) *catalog.Field { return o.fields[s] }

// limit is the most characters the operation takes in a text field.
func (o *opInfo) limit(name string) int {
	if f, ok := o.op.Field(name); ok && f.Max > 0 {
		return int(f.Max)
	}
	return maxText
}

// maxText bounds a text without a limit of its own; no manifest holds one
// this long.
const maxText = 1 << 30

// isParam reports whether s is a Stable Image form field that goes to
// Job.Params: every catalogue field but the two prompts (Job.Prompts) and
// the image inputs (Job.Inputs).
func isParam(s setting) bool {
	sp := s.spec()
	return sp.si && s != sPrompt && s != sNegative && sp.kind != kImage && sp.refused == ""
}

// carriesDefault reports whether a job carries the field even when the
// manifest leaves it out, with the API's default: the model of generate/sd3
// sets the price, so plans and reports must always know it.
func carriesDefault(f *catalog.Field) bool { return f.Name == "model" && f.Default != "" }

// aspectField is the field whose value sizes a ByAspect output.
const aspectField = "aspect_ratio"

// notTaken says that services do not take a setting, and what to use
// instead.
func notTaken(services []string, s setting) string {
	verb := " does not take "
	if len(services) > 1 {
		verb = " do not take "
	}
	msg := andList(services) + verb + s.name()
	switch s {
	case sSteps:
		return msg + "; Stable Image services choose their own steps"
	case sWidth, sHeight:
		return msg + "; use aspect_ratio"
	case sSamples:
		return msg + "; v2beta returns one image per request: sweep seed in a matrix for variations"
	case sSampler:
		return msg + "; Stable Image services choose their own sampler"
	case sClip:
		return msg + "; Stable Image services have no CLIP guidance"
	case sPrompts:
		return msg + "; use prompt and negative_prompt"
	}
	var takers []string
	for _, op := range catalog.All() {
		if _, ok := op.Field(s.name()); ok && !slices.Contains(services, op.Service) {
			takers = append(takers, op.Service)
		}
	}
	switch {
	case len(takers) == 1:
		return msg + "; " + takers[0] + " takes it"
	case len(takers) > 1 && len(takers) <= 3:
		return msg + "; " + andList(takers) + " take it"
	case len(services) == 1:
		// Most services take it: say what this one takes instead.
		op, _ := catalog.Lookup(services[0])
		var names []string
		for _, f := range op.Fields {
			if !f.Derived {
				names = append(names, f.Name)
			}
		}
		return msg + "; it takes " + andList(names)
	}
	return msg
}

// v1Refusal says that v1 engines do not take a Stable Image field.
func v1Refusal(s setting) string {
	msg := s.name() + " is a Stable Image field; "
	switch s.name() {
	case aspectField:
		return msg + "v1 engines take width and height"
	case "output_format":
		return msg + "v1 engines return PNG"
	case "model":
		return msg + "a v1 job chooses an engine"
	}
	return msg + "v1 engines do not take it"
}

// fieldProblem reports what is wrong with v as the operation's field f, or
// "". A prompt with {placeholders} is checked per row instead.
func fieldProblem(op *catalog.Operation, f *catalog.Field, v *value) string {
	switch f.Type {
	case catalog.Integer:
		if x := float64(v.num); x < f.Min || x > f.Max {
			return op.Service + " takes " + f.Name + " from " + num(f.Min) + " to " + num(f.Max) + ", got " + v.text
		}
	case catalog.Number:
		if v.f < f.Min || v.f > f.Max {
			return op.Service + " takes " + f.Name + " from " + num(f.Min) + " to " + num(f.Max) + ", got " + v.text
		}
	case catalog.Enum:
		if !slices.Contains(f.Enum, v.str) {
			return op.Service + " takes " + f.Name + " " + orList(f.Enum) + ", not " + strconv.Quote(v.str)
		}
	case catalog.Text:
		if v.origin != fromMatrix && v.tmpl.parts != nil {
			return ""
		}
		if f.Max > 0 {
			return checkLength(utf8.RuneCountInString(v.text), int(f.Max))
		}
	case catalog.Image:
		if v.img == nil || v.img.file == nil || v.img.file.problem != "" {
			return "" // a {from} is checked once the jobs are known; a bad file was reported
		}
		check := f.Limits.Check(v.img.file.w, v.img.file.h)
		if check == "" {
			return ""
		}
		msg := clip(v.img.written, 80) + " " + check
		if v.origin == fromDefaults {
			msg = "for " + op.Service + ", " + msg
		}
		return msg
	}
	return ""
}

// ruleProblems returns the reason of every combination rule of op that the
// fields set break.
func ruleProblems(op *catalog.Operation, isSet func(name string) bool) []string {
	var out []string
	for _, r := range op.Rules {
		some := slices.ContainsFunc(r.Fields, isSet)
		switch r.Kind {
		case catalog.Requires:
			if isSet(r.If) && !allSet(r.Fields, isSet) {
				out = append(out, r.Why)
			}
		case catalog.Excludes:
			if isSet(r.If) && some {
				out = append(out, r.Why)
			}
		case catalog.OneOf:
			if !some {
				out = append(out, r.Why)
			}
		}
	}
	return out
}

// allSet reports whether every field of names is set.
func allSet(names []string, isSet func(string) bool) bool {
	for _, n := range names {
		if !isSet(n) {
			return false
		}
	}
	return true
}

// num formats a bound without exponent: 4294967294, 0.5.
func num(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// orList joins words as "a", "a or b", "a, b or c".
func orList(words []string) string { return list(words, " or ") }

// andList joins words as "a", "a and b", "a, b and c".
func andList(words []string) string { return list(words, " and ") }

func list(words []string, last string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + last + words[len(words)-1]
}
