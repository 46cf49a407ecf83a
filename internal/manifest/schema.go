package manifest

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/engine"
)

// Schema returns the manifest's JSON Schema (draft 2020-12), for editors and
// `batch schema`. It is built from the v1 engine tables and the Stable Image
// catalogue, so it describes what Parse accepts: the v1 settings, service
// and the fields of every service (image inputs as a path or a {from}
// mapping), each service's own ranges and enums when a job names it (or
// inherits it), and v1 limits when a job runs an engine. The checks a
// schema cannot express (sizes and steps per engine, placeholders, unique
// ids, a default no job takes, required fields and combination rules,
// image files and the jobs a from names) are Parse's alone.
// internal/manifest/schema.json holds the same text for editors that read a
// file; a test keeps the two equal. The caller gets its own copy.
func Schema() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(schemaDoc()); err != nil {
		// Every value is a string, number, bool, slice or object.
		panic("manifest: encode schema: " + err.Error())
	}
	return b.Bytes()
}

// object is a JSON object that keeps its members in the order written, so
// the schema reads from the top level down.
type object []member

type member struct {
	key string
	val any
}

// MarshalJSON writes the members in order.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(m.val)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func ref(def string) object { return object{{"$ref", "#/$defs/" + def}} }

// list is the schema of a matrix key's values.
func listOf(items any) object {
	return object{{"type", "array"}, {"minItems", 1}, {"uniqueItems", true}, {"items", items}}
}

// rangeOf is the schema of a matrix key of an integer setting written as
// a range, {from, to, step}, whose ends match end.
func rangeOf(end any) object {
	return object{
		{"description", "A range: from, from+step, … up to to (step 1 when absent); from ≤ to."},
		{"type", "object"}, {"additionalProperties", false}, {"required", []string{"from", "to"}},
		{"properties", object{{"from", end}, {"to", end}, {"step", object{{"type", "integer"}, {"minimum", 1}}}}},
	}
}

// listOrRange is the schema of a matrix key of an integer setting: a list
// of values, or a range.
func listOrRange(items, end any) object {
	return object{{"anyOf", []any{listOf(items), rangeOf(end)}}}
}

// placeholderValue is the schema of a matrix value that only fills a
// {placeholder}.
func placeholderValue() object { return object{{"type", []string{"string", "number", "boolean"}}} }

// required is the schema of an object that has every key of keys.
func required(keys ...string) object { return object{{"required", keys}} }

// has is the schema of an object whose key k matches s.
func has(k string, s any) object {
	return object{{"required", []string{k}}, {"properties", object{{k, s}}}}
}

// serviceDef names the definition of the jobs on a service.
func serviceDef(service string) string { return "on-" + strings.ReplaceAll(service, "/", "-") }

// siFields are the Stable Image fields a manifest may write (derived ones
// aside), in setting order.
func siFields(ops []*catalog.Operation) []setting {
	var out []setting
	for s := range setting(len(settings.specs)) {
		sp := s.spec()
		if !sp.si || sp.refused != "" {
			continue
		}
		for _, op := range ops {
			if _, ok := op.Field(sp.name); ok {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

func schemaDoc() object {
	var ops []*catalog.Operation
	for _, s := range catalog.Services() {
		op, _ := catalog.Lookup(s)
		ops = append(ops, op)
	}
	fields := siFields(ops)
	var siOnly []setting // Stable Image fields v1 engines do not take
	for _, s := range fields {
		if !s.spec().v1 {
			siOnly = append(siOnly, s)
		}
	}

	// The most specific engine or service wins: a job's own over defaults',
	// defaults' over the top level's.
	ownService := object{{"anyOf", []any{required("service"), has("matrix", required("service"))}}}
	ownEngine := object{{"anyOf", []any{required("engine"), has("matrix", required("engine"))}}}
	ownOp := object{{"anyOf", []any{ownService, ownEngine}}}
	conditions := []any{
		object{{"description", "An engine or a service, not both."}, {"not", required("engine", "service")}},
		object{
			{"if", object{{"anyOf", []any{
				has("defaults", required("engine")),
				object{{"allOf", []any{required("engine"), object{{"not", has("defaults", required("service"))}}}}},
			}}}},
			{"then", object{{"properties", object{{"jobs", object{{"items", object{
				{"if", object{{"not", ownOp}}},
				{"then", ref("v1-job")},
			}}}}}}}},
		},
	}
	for _, op := range ops {
		is := has("service", object{{"const", op.Service}})
		inherits := object{{"anyOf", []any{
			has("defaults", is),
			object{{"allOf", []any{is, object{{"not", has("defaults", required("service"))}}, object{{"not", has("defaults", required("engine"))}}}}},
		}}}
		conditions = append(conditions, object{
			{"if", inherits},
			{"then", object{{"properties", object{{"jobs", object{{"items", object{
				{"if", object{{"not", ownOp}}},
				{"then", ref(serviceDef(op.Service))},
			}}}}}}}},
		})
	}

	defs := object{
		{"engine", object{{"description", "A Stability v1 text-to-image engine id."}, {"enum", engine.IDs()}}},
		{"service", object{{"description", "A Stable Image (v2beta) service: the endpoint's path under /v2beta/stable-image/."}, {"enum", catalog.Services()}}},
		{"text", object{
			{"description", "A prompt text, not blank: up to 10000 characters on Stable Image services, 2000 on v1 engines. {name} is a placeholder filled from the job's matrix."},
			{"type", "string"}, {"minLength", 1}, {"maxLength", 10000}, {"pattern", `\S`},
		}},
		{"v1-text", object{{"description", "A v1 prompt text: at most 2000 characters."}, {"maxLength", maxPromptRunes}}},
		{"side", object{
			{"description", "Pixels; a multiple of 64. Which sizes an engine accepts is checked by the loader (SDXL 1.0 takes nine sizes, e.g. 1024x1024, 1152x896, 1216x832, 1344x768, 1536x640 and their transposes)."},
			{"type", "integer"}, {"multipleOf", 64}, {"minimum", 128}, {"maximum", 8192},
		}},
		{"steps", object{
			{"description", "Diffusion steps (v1 engines): 10-150 on seed-era engines, 10-50 on SDXL 1.0 and SD 1.6. Default: 30 on SDXL 1.0 and SD 1.6, 50 otherwise."},
			{"type", "integer"}, {"minimum", 10}, {"maximum", 150},
		}},
		{"cfg_scale", object{
			{"description", "How strictly the image follows the prompt: 0-35 on v1 engines (7 when absent), 1-10 on generate/sd3."},
			{"type", "number"}, {"minimum", 0}, {"maximum", 35},
		}},
		{"seed", object{
			{"description", "0 lets the API pick a random seed. At most 4294967295 on v1 engines, 4294967294 on Stable Image services."},
			{"type", "integer"}, {"minimum", 0}, {"maximum", maxSeed},
		}},
		{"samples", object{{"description", "Images per request on v1 engines, 1-10. Default 1."}, {"type", "integer"}, {"minimum", 1}, {"maximum", 10}}},
		{"sampler", object{{"description", "v1 engines; omit to let the API choose."}, {"enum", engine.Samplers()}}},
		{"style_preset", object{{"enum", sStyle.spec().enum}}},
		{"clip_guidance_preset", object{{"description", "v1 engines."}, {"enum", engine.ClipGuidancePresets()}}},
		{"image-input", object{
			{"description", "An image input: a PNG, JPEG or WebP file, its path relative to this file; or {from: JOB_ID} for the image another job of the manifest makes ({from: JOB_ID, index: N} for its N-th image, 1-based). In from, a {placeholder} takes its matrix value in id form."},
			{"oneOf", []any{
				object{{"type", "string"}, {"minLength", 1}, {"pattern", `\S`}},
				object{
					{"type", "object"}, {"additionalProperties", false}, {"required", []string{"from"}},
					{"properties", object{
						{"from", object{{"description", "The id of a job of this manifest, as plan shows it (a matrix row's id, e.g. hero-oil-painting)."}, {"type", []string{"string", "integer"}}, {"minLength", 1}, {"pattern", `\S`}}},
						{"index", object{{"description", "Which of the job's images, 1-based. Default 1."}, {"type", "integer"}, {"minimum", 1}, {"maximum", maxIndex}}},
					}},
				},
			}},
		}},
	}
	for _, s := range siOnly {
		defs = append(defs, member{s.name(), unionField(s, ops)})
	}
	defs = append(defs,
		member{"prompts", object{
			{"description", "The v1 API's text_prompts, for full control; excludes prompt and negative_prompt. A negative weight makes a negative prompt."},
			{"type", "array"}, {"minItems", 1},
			{"items", object{
				{"type", "object"}, {"additionalProperties", false}, {"required", []string{"text"}},
				{"properties", object{
					{"text", object{{"allOf", []any{ref("text"), ref("v1-text")}}}},
					{"weight", object{{"description", "Default 1; negative for a negative prompt."}, {"type", "number"}}},
				}},
			}},
		}},
		member{"defaults", object{
			{"description", "Job settings every job inherits unless it sets its own; a setting applies only to the jobs whose engine or service takes it."},
			{"type", "object"}, {"additionalProperties", false},
			{"properties", settingProps(fields)},
			{"not", exclusions()},
		}},
		member{"matrix", matrixDef(siOnly)},
		member{"job", object{
			{"description", "One job: an engine (v1) or a service (Stable Image), settings overriding defaults, an optional id and an optional matrix."},
			{"type", "object"}, {"additionalProperties", false},
			{"properties", append(append(object{{"id", object{
				{"description", "Optional, unique; derived from the prompt when absent."},
				{"type", "string"}, {"pattern", idPattern},
			}}}, settingProps(fields)...), member{"matrix", ref("matrix")})},
			{"not", exclusions()},
			{"allOf", jobConditions(ops)},
		}},
		member{"v1-job", v1Def(siOnly)},
	)
	for _, op := range ops {
		defs = append(defs, member{serviceDef(op.Service), serviceDefOf(op, fields)})
	}

	return object{
		{"$schema", "https://json-schema.org/draft/2020-12/schema"},
		{"$id", "https://github.com/batch-tool/batch/internal/manifest/schema.json"},
		{"title", "batch manifest, version 1"},
		{"description", "Stability AI image jobs for the batch tool: v1 text-to-image engines and Stable Image (v2beta) services, each job on one. Sizes and steps per engine, {placeholders} and defaults no job takes are checked by 'batch plan'."},
		{"type", "object"},
		{"additionalProperties", false},
		{"required", []string{"version", "jobs"}},
		{"properties", object{
			{"version", object{{"description", "Manifest format version."}, {"const", 1}}},
			{"name", object{{"description", "Shown in reports."}, {"type", "string"}}},
			{"engine", object{{"$ref", "#/$defs/engine"}, {"description", "Default v1 engine of every job."}}},
			{"service", object{{"$ref", "#/$defs/service"}, {"description", "Default Stable Image service of every job."}}},
			{"pricing", object{
				{"description", "Price sheet id ('batch prices' lists them); omit for the current sheet."},
				{"type", "string"}, {"minLength", 1}, {"pattern", `\S`},
			}},
			{"budget", object{{"description", "Credit ceiling: a non-negative decimal with at most 6 decimals. --budget overrides."}, {"type", "number"}, {"minimum", 0}}},
			{"output", object{{"description", "Output folder, relative to this file. --out overrides."}, {"type", "string"}, {"minLength", 1}, {"pattern", `\S`}}},
			{"cache", object{
				{"description", "Image cache: false to buy every image, true for the default folder (batch/images in the user's cache folder), or a folder relative to this file. --cache and --no-cache override."},
				{"oneOf", []any{object{{"type", "boolean"}}, object{{"type", "string"}, {"minLength", 1}, {"pattern", `\S`}}}},
			}},
			{"concurrency", object{
				{"description", "auto or a number of requests in flight. --concurrency overrides."},
				{"oneOf", []any{object{{"const", "auto"}}, object{{"type", "integer"}, {"minimum", 1}, {"maximum", 2147483647}}}},
			}},
			{"rate", object{
				{"description", "Request limit as N/DURATION, e.g. 150/10s, or N/UNIT for one unit, e.g. 60/s. --rate overrides."},
				{"type", "string"}, {"pattern", `^\s*[0-9]*[1-9][0-9]*/((ns|us|µs|μs|ms|s|m|h)|([0-9]*\.?[0-9]+(ns|us|µs|μs|ms|s|m|h))+)\s*$`},
			}},
			{"defaults", ref("defaults")},
			{"jobs", object{{"type", "array"}, {"minItems", 1}, {"items", ref("job")}}},
		}},
		{"allOf", conditions},
		{"$defs", defs},
	}
}

// settingProps are the properties of a job's (or defaults') settings: the
// v1 ones, service and the Stable Image fields, each with the widest schema.
func settingProps(fields []setting) object {
	props := object{
		{"engine", ref("engine")},
		{"service", ref("service")},
		{"prompt", ref("text")},
		{"negative_prompt", object{{"$ref", "#/$defs/text"}, {"description", "v1: sent as a prompt with weight -1."}}},
		{"prompts", ref("prompts")},
		{"width", ref("side")},
		{"height", ref("side")},
		{"steps", ref("steps")},
		{"cfg_scale", ref("cfg_scale")},
		{"seed", ref("seed")},
		{"samples", ref("samples")},
		{"sampler", ref("sampler")},
		{"style_preset", ref("style_preset")},
		{"clip_guidance_preset", ref("clip_guidance_preset")},
	}
	for _, s := range fields {
		if !s.spec().v1 {
			props = append(props, member{s.name(), ref(s.name())})
		}
	}
	return props
}

// exclusions are the pairs of keys one mapping may not hold together.
func exclusions() object {
	return object{{"anyOf", []any{required("prompts", "prompt"), required("prompts", "negative_prompt"), required("engine", "service")}}}
}

// jobConditions apply a job's own engine or service.
func jobConditions(ops []*catalog.Operation) []any {
	out := []any{object{{"if", required("engine")}, {"then", ref("v1-job")}}}
	for _, op := range ops {
		out = append(out, object{{"if", has("service", object{{"const", op.Service}})}, {"then", ref(serviceDef(op.Service))}})
	}
	return out
}

// matrixDef is the schema of a matrix. A key named like a Stable Image field
// may be a v1 job's {placeholder}, so its values are the field's or plain.
func matrixDef(siOnly []setting) object {
	props := object{
		{"engine", listOf(ref("engine"))},
		{"service", listOf(object{{"anyOf", []any{ref("service"), placeholderValue()}}})},
		{"prompt", listOf(ref("text"))},
		{"negative_prompt", listOf(ref("text"))},
	}
	for _, name := range []string{"width", "height", "steps", "cfg_scale", "seed", "samples", "sampler", "style_preset", "clip_guidance_preset"} {
		def := name
		if name == "width" || name == "height" {
			def = "side"
		}
		if s := settings.byName[name]; s.spec().kind == kInt {
			props = append(props, member{name, listOrRange(ref(def), ref(def))})
			continue
		}
		props = append(props, member{name, listOf(ref(def))})
	}
	for _, s := range siOnly {
		items := object{{"anyOf", []any{ref(s.name()), placeholderValue()}}}
		if s.spec().kind == kInt {
			props = append(props, member{s.name(), listOrRange(items, ref(s.name()))})
			continue
		}
		props = append(props, member{s.name(), listOf(items)})
	}
	return object{
		{"description", "Cartesian product of the lists, first key varying slowest. A key is a {placeholder} used in the prompt texts and/or a job setting; an integer setting may be a range instead of a list, e.g. seed: {from: 1, to: 600}."},
		{"type", "object"},
		{"minProperties", 1},
		{"propertyNames", object{{"pattern", "^[A-Za-z_][A-Za-z0-9_]*$"}, {"not", object{{"enum", []string{"prompts", "id", "matrix"}}}}}},
		{"properties", props},
		{"additionalProperties", listOf(placeholderValue())},
	}
}

// unionField is the schema of a Stable Image field as any service takes it.
func unionField(s setting, ops []*catalog.Operation) object {
	sp := s.spec()
	var takers []string
	def := ""
	for _, op := range ops {
		if f, ok := op.Field(sp.name); ok {
			takers = append(takers, op.Service)
			def = f.Default
		}
	}
	desc := "Stable Image (" + strings.Join(takers, ", ") + ")."
	if def != "" {
		desc += " Default " + def + "."
	}
	out := object{{"description", desc}}
	switch sp.kind {
	case kInt:
		return append(out, member{"type", "integer"}, member{"minimum", sp.lo}, member{"maximum", sp.hi})
	case kNum:
		return append(out, member{"type", "number"}, member{"minimum", sp.lo}, member{"maximum", sp.hi})
	case kEnum:
		return append(out, member{"enum", sp.enum})
	case kImage:
		return append(out, member{"$ref", "#/$defs/image-input"})
	}
	return append(out, member{"type", "string"})
}

// opField is the schema of a field as one operation takes it.
func opField(f *catalog.Field) object {
	switch f.Type {
	case catalog.Integer:
		return object{{"type", "integer"}, {"minimum", f.Min}, {"maximum", f.Max}}
	case catalog.Number:
		return object{{"type", "number"}, {"minimum", f.Min}, {"maximum", f.Max}}
	case catalog.Enum:
		return object{{"enum", f.Enum}}
	}
	if f.Max > 0 {
		return object{{"maxLength", f.Max}}
	}
	return object{}
}

// v1Def is what a job on a v1 engine may not hold.
func v1Def(siOnly []setting) object {
	props := object{{"service", false}}
	for _, s := range siOnly {
		props = append(props, member{s.name(), false})
	}
	props = append(props,
		member{"prompt", ref("v1-text")},
		member{"negative_prompt", ref("v1-text")},
		member{"matrix", object{{"properties", object{
			{"prompt", object{{"items", ref("v1-text")}}},
			{"negative_prompt", object{{"items", ref("v1-text")}}},
		}}}},
	)
	return object{{"description", "A job on a v1 engine: no Stable Image field, prompts of at most 2000 characters."}, {"properties", props}}
}

// serviceDefOf is what a job on op may hold: the fields it takes, with its
// ranges and enums, and none of the others.
func serviceDefOf(op *catalog.Operation, fields []setting) object {
	props, matrix := object{}, object{}
	for s := range sService {
		if s == sPrompt || s == sNegative || s.spec().si {
			continue
		}
		props = append(props, member{s.name(), false})
		if s != sPrompts {
			matrix = append(matrix, member{s.name(), false})
		}
	}
	for _, s := range fields {
		f, ok := op.Field(s.name())
		if !ok {
			props = append(props, member{s.name(), false})
			matrix = append(matrix, member{s.name(), false})
			continue
		}
		props = append(props, member{s.name(), opField(f)})
		if f.Type == catalog.Integer {
			// items holds a list's values, properties a range's ends.
			matrix = append(matrix, member{s.name(), object{{"items", opField(f)}, {"properties", object{{"from", opField(f)}, {"to", opField(f)}}}}})
			continue
		}
		matrix = append(matrix, member{s.name(), object{{"items", opField(f)}}})
	}
	for s := range setting(len(settings.specs)) {
		if sp := s.spec(); sp.refused != "" && slices.ContainsFunc(op.Fields, func(f catalog.Field) bool { return f.Name == sp.name }) {
			matrix = append(matrix, member{sp.name, false})
		}
	}
	props = append(props, member{"matrix", object{{"properties", matrix}}})
	return object{{"description", op.Service + " (" + op.Title + ")."}, {"properties", props}}
}
