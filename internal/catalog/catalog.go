// Package catalog describes the Stable Image (v2beta) operations batch runs,
// as data: each service's endpoint, form fields with the API's types, ranges
// and enums, combination rules, output sizes and whether it answers
// asynchronously. The manifest validator, the JSON Schema, the sandbox's
// checks, the client's request encoding and the plan's columns all read this
// one table, so what the tool refuses locally is what the sandbox refuses on
// the wire. A test holds it against the OpenAPI snapshot in testdata.
//
// The v1 text-to-image engines, whose rules are per engine rather than per
// field, are described by package engine.
package catalog

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// Type is the kind of value a form field takes.
type Type int

// The field types.
const (
	// Text is a string of MinLen to MaxLen characters (Unicode code points).
	Text Type = iota + 1
	// Integer is a whole number in [Min, Max].
	Integer
	// Number is a decimal number in [Min, Max].
	Number
	// Enum is one of the field's Enum values, sent as text.
	Enum
	// Image is an image input, sent as a file part (PNG, JPEG or WebP).
	Image
)

func (t Type) String() string {
	switch t {
	case Text:
		return "text"
	case Integer:
		return "integer"
	case Number:
		return "number"
	case Enum:
		return "enum"
	case Image:
		return "image"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Field is one multipart form field of an operation.
type Field struct {
	Name     string // the API's form field name, e.g. "aspect_ratio"
	Type     Type
	Required bool // the API refuses a request without it
	// Min and Max bound an Integer or Number; for Text they bound the length
	// in characters (Max 0 means no limit).
	Min, Max float64
	Enum     []string // the accepted values of an Enum, in the spec's order
	// Default is the API's default, as text; "" when the API has none or the
	// field is optional without one.
	Default string
	// Derived marks a field the client computes from other fields (sd3's mode
	// from image); a manifest never sets it.
	Derived bool
	// Limits are the dimensions an Image input must have; the zero value
	// (a mask's) checks none.
	Limits Limits
}

// Limits are the dimensions an image input must have, from the field's
// description in the spec. A zero bound is not checked.
type Limits struct {
	MinSide, MaxSide     int     // pixels, each side
	MinPixels, MaxPixels int     // width × height
	MaxAspect            float64 // longest side / shortest side, e.g. 2.5
}

// Check returns what is wrong with an input of w×h pixels, or "" when it fits.
func (l Limits) Check(w, h int) string {
	short, long := min(w, h), max(w, h)
	switch {
	case l.MinSide > 0 && short < l.MinSide:
		return "is " + strconv.Itoa(w) + "×" + strconv.Itoa(h) + "; every side must be at least " + strconv.Itoa(l.MinSide) + " pixels"
	case l.MaxSide > 0 && long > l.MaxSide:
		return "is " + strconv.Itoa(w) + "×" + strconv.Itoa(h) + "; every side must be at most " + strconv.Itoa(l.MaxSide) + " pixels"
	case l.MinPixels > 0 && w*h < l.MinPixels:
		return "is " + strconv.Itoa(w) + "×" + strconv.Itoa(h) + " (" + strconv.Itoa(w*h) + " pixels); the service needs at least " + strconv.Itoa(l.MinPixels)
	case l.MaxPixels > 0 && w*h > l.MaxPixels:
		return "is " + strconv.Itoa(w) + "×" + strconv.Itoa(h) + " (" + strconv.Itoa(w*h) + " pixels); the service takes at most " + strconv.Itoa(l.MaxPixels)
	case l.MaxAspect > 0 && float64(long) > l.MaxAspect*float64(short):
		return "is " + strconv.Itoa(w) + "×" + strconv.Itoa(h) + "; its aspect ratio must be between 1:" + strconv.FormatFloat(l.MaxAspect, 'g', -1, 64) + " and " + strconv.FormatFloat(l.MaxAspect, 'g', -1, 64) + ":1"
	}
	return ""
}

// MaxBody is the largest request body the Stable Image services accept, in
// bytes (10 MiB); a larger one gets 413 payload_too_large.
const MaxBody = 10 << 20

// RuleKind names a combination rule between fields.
type RuleKind int

// The rule kinds.
const (
	// Requires: when If is set, every field of Fields must be set too.
	Requires RuleKind = iota + 1
	// Excludes: when If is set, no field of Fields may be set.
	Excludes
	// OneOf: at least one field of Fields must be set.
	OneOf
)

// Rule is a combination rule between an operation's fields.
type Rule struct {
	Kind   RuleKind
	If     string   // the field whose presence triggers the rule; "" for OneOf
	Fields []string // the fields the rule is about
	Why    string   // what the API says, for error messages
}

// SizeRule says how an operation's output size follows from its request.
type SizeRule int

// The output size rules, as the live API produced them on 2026-09-22.
const (
	// ByAspect: about one megapixel (AspectSize scaled by Scale) in the
	// shape of aspect_ratio, or, with an image input, of the aspect ratio
	// nearest the input's.
	ByAspect SizeRule = iota + 1
	// SameAsInput: the output has the size of the image input.
	SameAsInput
	// ScaledInput: each side of the input multiplied by Scale.
	ScaledInput
	// InputPlusMargins: the input grown by left, right, up and down.
	InputPlusMargins
	// UpscaleToArea: the input scaled, keeping its aspect, to about Area pixels.
	UpscaleToArea
	// AspectArea: about Area pixels in the shape of aspect_ratio
	// (control/style: 16:9 → 1365×768 for one megapixel).
	AspectArea
)

// Output describes an operation's output size.
type Output struct {
	Rule SizeRule
	// Scale multiplies AspectSizes (ByAspect) or the input's sides
	// (ScaledInput); 1 when zero.
	Scale float64
	// Area is the output's pixel count for UpscaleToArea and AspectArea.
	Area int
}

// Size is an image's width and height in pixels.
type Size struct{ W, H int }

// OutputSize returns the size of the image the operation returns for a
// request whose field values get gives ("" for a field not sent), and whose
// main image input (Input) has size in (zero when unknown). ok is false when
// the size depends on an input whose size is unknown. Image-to-image on a
// generate service, whose size the API does not document, gets the size of
// the aspect ratio nearest the input's, as the live API returned it.
func (o *Operation) OutputSize(get func(field string) string, in Size) (s Size, ok bool) {
	known := in.W > 0 && in.H > 0
	switch o.Output.Rule {
	case ByAspect:
		ratio := cmpOr(get("aspect_ratio"), "1:1")
		if main := o.Input(); main != "" && get(main) != "" {
			// Image-to-image takes the input's shape: a 1536×1536 input
			// gave 1024×1024 on Ultra, SD 3.5 and style-transfer.
			if !known {
				return Size{}, false
			}
			ratio = NearestAspect(in)
		}
		w, h, ok := AspectSize(ratio, o.Output.Scale)
		return Size{w, h}, ok
	case AspectArea:
		r, ok := aspectRatio(cmpOr(get("aspect_ratio"), "1:1"))
		if !ok {
			return Size{}, false
		}
		a := float64(o.Output.Area)
		return Size{int(math.Round(math.Sqrt(a * r))), int(math.Round(math.Sqrt(a / r)))}, true
	case SameAsInput:
		return in, known
	case ScaledInput:
		return Size{int(float64(in.W) * o.Output.Scale), int(float64(in.H) * o.Output.Scale)}, known
	case InputPlusMargins:
		n := func(f string) int { v, _ := strconv.Atoi(get(f)); return v }
		return Size{in.W + n("left") + n("right"), in.H + n("up") + n("down")}, known
	case UpscaleToArea:
		if !known {
			return Size{}, false
		}
		r := float64(in.W) / float64(in.H)
		a := float64(o.Output.Area)
		return Size{int(math.Round(math.Sqrt(a * r))), int(math.Round(math.Sqrt(a / r)))}, true
	}
	return Size{}, false
}

// NearestAspect returns the aspect ratio, of the nine, closest to in's shape.
func NearestAspect(in Size) string {
	best, bestDist := "1:1", math.Inf(1)
	want := math.Log(float64(in.W) / float64(in.H))
	for _, r := range aspectRatios {
		s := aspectSizes[r]
		if d := math.Abs(math.Log(float64(s[0])/float64(s[1])) - want); d < bestDist {
			best, bestDist = r, d
		}
	}
	return best
}

// Input returns the name of the operation's main image input, the one its
// output size follows ("image", "init_image" or "subject_image"); "" when
// it takes no image.
func (o *Operation) Input() string {
	for _, f := range o.Fields {
		if f.Type == Image && (f.Required || f.Name == "image") {
			return f.Name
		}
	}
	return ""
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// aspectRatio returns width/height of a ratio such as "16:9".
func aspectRatio(s string) (float64, bool) {
	if !slices.Contains(aspectRatios, s) {
		return 0, false
	}
	w, h, _ := strings.Cut(s, ":")
	a, _ := strconv.Atoi(w)
	b, _ := strconv.Atoi(h)
	return float64(a) / float64(b), true
}

// Operation is one Stable Image service.
type Operation struct {
	Service string // the path under /v2beta/stable-image/, e.g. "generate/core"
	Title   string // the spec's summary, e.g. "Stable Image Core"
	Fields  []Field
	Rules   []Rule
	Output  Output
	// Async services answer the submit with a generation id that is polled
	// at /v2beta/results/{id}.
	Async bool
	// SpecBugs names where the spec snapshot disagrees with the live API, as
	// field names: the snapshot test tolerates exactly these.
	SpecBugs []string
}

// Path is the operation's endpoint, e.g. "/v2beta/stable-image/generate/core".
func (o *Operation) Path() string { return "/v2beta/stable-image/" + o.Service }

// Field returns the field named name.
func (o *Operation) Field(name string) (*Field, bool) {
	for i := range o.Fields {
		if o.Fields[i].Name == name {
			return &o.Fields[i], true
		}
	}
	return nil, false
}

// Images returns the names of the operation's image inputs, in field order.
func (o *Operation) Images() []string {
	var out []string
	for _, f := range o.Fields {
		if f.Type == Image {
			out = append(out, f.Name)
		}
	}
	return out
}

// TakesImages reports whether the operation has an image input.
func (o *Operation) TakesImages() bool { return len(o.Images()) > 0 }

// Aspect ratios the generate and control services accept, in the spec's order.
var aspectRatios = []string{"21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21"}

// AspectRatios returns the nine aspect_ratio values, in the spec's order.
func AspectRatios() []string { return slices.Clone(aspectRatios) }

// aspectSizes are the output sizes of SD 3.5 and Ultra (about one megapixel)
// per aspect ratio, as the live API returned them.
var aspectSizes = map[string][2]int{
	"21:9": {1536, 640}, "16:9": {1344, 768}, "3:2": {1216, 832}, "5:4": {1088, 896},
	"1:1": {1024, 1024}, "4:5": {896, 1088}, "2:3": {832, 1216}, "9:16": {768, 1344}, "9:21": {640, 1536},
}

// AspectSize returns the width and height, in pixels, of a ByAspect output
// with the given aspect ratio and scale (0 means 1); ok is false for an
// unknown ratio.
func AspectSize(ratio string, scale float64) (w, h int, ok bool) {
	s, ok := aspectSizes[ratio]
	if !ok {
		return 0, 0, false
	}
	if scale == 0 || scale == 1 {
		return s[0], s[1], true
	}
	return int(float64(s[0]) * scale), int(float64(s[1]) * scale), true
}

// Style presets of the v2beta services, in the spec's order.
var stylePresets = []string{
	"enhance", "anime", "photographic", "digital-art", "comic-book", "fantasy-art", "line-art",
	"analog-film", "neon-punk", "isometric", "low-poly", "origami", "modeling-compound",
	"cinematic", "3d-model", "pixel-art", "tile-texture",
}

// SD35Models are the models generate/sd3 accepts. sd3.5-flash is missing from
// the spec's enum but accepted by the live API (a documented spec bug).
var sd35Models = []string{"sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash"}

// Field constructors, to keep the table below readable.

// prompt is the prompt field; a required one must not be empty.
func prompt(required bool) Field {
	f := text("prompt", required)
	if required {
		f.Min = 1
	}
	return f
}

// text is a text field of up to 10,000 characters.
func text(name string, required bool) Field {
	return Field{Name: name, Type: Text, Required: required, Max: 10000}
}

func negative() Field { return text("negative_prompt", false) }

func seed() Field {
	return Field{Name: "seed", Type: Integer, Min: 0, Max: 4294967294, Default: "0"}
}

func aspect() Field {
	return Field{Name: "aspect_ratio", Type: Enum, Enum: aspectRatios, Default: "1:1"}
}

func style() Field { return Field{Name: "style_preset", Type: Enum, Enum: stylePresets} }

func format(values ...string) Field {
	if len(values) == 0 {
		values = []string{"png", "jpeg", "webp"}
	}
	return Field{Name: "output_format", Type: Enum, Enum: values, Default: "png"}
}

func image(name string, required bool, l Limits) Field {
	return Field{Name: name, Type: Image, Required: required, Limits: l}
}

// The input limits the spec states, shared by most services: sides of at
// least 64 pixels, 4,096 to 9,437,184 pixels, with or without an aspect
// ratio between 1:2.5 and 2.5:1.
var (
	common       = Limits{MinSide: 64, MinPixels: 4096, MaxPixels: 9_437_184}
	commonAspect = Limits{MinSide: 64, MinPixels: 4096, MaxPixels: 9_437_184, MaxAspect: 2.5}
	noLimits     = Limits{}
)

func number(name string, lo, hi float64, def string) Field {
	return Field{Name: name, Type: Number, Min: lo, Max: hi, Default: def}
}

func integer(name string, lo, hi float64, def string) Field {
	return Field{Name: name, Type: Integer, Min: lo, Max: hi, Default: def}
}

// imageToImage are the rules of generate/ultra and generate/sd3 with an
// image input.
var imageToImage = []Rule{
	{Kind: Requires, If: "image", Fields: []string{"strength"}, Why: "strength is required with image"},
	{Kind: Requires, If: "strength", Fields: []string{"image"}, Why: "strength only applies to an image input"},
	{Kind: Excludes, If: "image", Fields: []string{"aspect_ratio"}, Why: "the output takes the input image's aspect ratio"},
}

// operations is the catalogue, sorted by service. Fields follow the spec's
// order for each endpoint.
var operations = []Operation{
	{
		Service: "control/sketch", Title: "Sketch",
		Fields: []Field{prompt(true), image("image", true, Limits{MinSide: 64, MaxPixels: 9_437_184, MaxAspect: 2.5}), number("control_strength", 0, 1, "0.7"), negative(), seed(), format(), style()},
		Output: Output{Rule: SameAsInput},
	},
	{
		Service: "control/structure", Title: "Structure",
		Fields: []Field{prompt(true), image("image", true, commonAspect), number("control_strength", 0, 1, "0.7"), negative(), seed(), format(), style()},
		Output: Output{Rule: SameAsInput},
	},
	{
		Service: "control/style", Title: "Style Guide",
		Fields: []Field{prompt(true), image("image", true, commonAspect), negative(), aspect(), number("fidelity", 0, 1, "0.5"), seed(), format(), style()},
		Output: Output{Rule: AspectArea, Area: 1 << 20},
	},
	{
		Service: "control/style-transfer", Title: "Style Transfer",
		Fields: []Field{
			image("init_image", true, Limits{MinSide: 64, MaxSide: 16383, MinPixels: 4096, MaxPixels: 9_437_184, MaxAspect: 2.5}), image("style_image", true, Limits{MinSide: 64, MaxSide: 16383, MinPixels: 4096, MaxPixels: 9_437_184}), prompt(false), negative(), seed(),
			number("style_strength", 0, 1, "1"), number("composition_fidelity", 0, 1, "0.9"),
			number("change_strength", 0.1, 1, "0.9"), format(),
		},
		Output: Output{Rule: ByAspect},
	},
	{
		Service: "edit/erase", Title: "Erase",
		Fields:   []Field{image("image", true, common), image("mask", false, noLimits), number("grow_mask", 0, 20, "5"), seed(), format()},
		Output:   Output{Rule: SameAsInput},
		SpecBugs: []string{"prompt"}, // listed as required, but erase has no prompt
	},
	{
		Service: "edit/inpaint", Title: "Inpaint",
		Fields: []Field{image("image", true, common), prompt(true), negative(), image("mask", false, noLimits), number("grow_mask", 0, 100, "5"), seed(), format(), style()},
		Output: Output{Rule: SameAsInput},
	},
	{
		Service: "edit/outpaint", Title: "Outpaint",
		Fields: []Field{
			image("image", true, commonAspect), integer("left", 0, 2000, "0"), integer("right", 0, 2000, "0"),
			integer("up", 0, 2000, "0"), integer("down", 0, 2000, "0"), number("creativity", 0, 1, "0.5"),
			prompt(false), seed(), format(), style(),
		},
		Rules:  []Rule{{Kind: OneOf, Fields: []string{"left", "right", "up", "down"}, Why: "outpaint needs at least one direction to grow"}},
		Output: Output{Rule: InputPlusMargins},
	},
	{
		Service: "edit/remove-background", Title: "Remove Background",
		Fields: []Field{image("image", true, Limits{MinSide: 64, MinPixels: 4096, MaxPixels: 4_194_304}), format("png", "webp")},
		Output: Output{Rule: SameAsInput},
	},
	{
		Service: "edit/replace-background-and-relight", Title: "Replace Background and Relight",
		Fields: []Field{
			image("subject_image", true, commonAspect), image("background_reference", false, common), text("background_prompt", false),
			text("foreground_prompt", false), negative(), number("preserve_original_subject", 0, 1, "0.6"),
			number("original_background_depth", 0, 1, "0.5"),
			{Name: "keep_original_background", Type: Enum, Enum: []string{"true", "false"}, Default: "false"},
			{Name: "light_source_direction", Type: Enum, Enum: []string{"left", "right", "above", "below"}},
			image("light_reference", false, common), number("light_source_strength", 0, 1, "0.3"), seed(), format(),
		},
		Rules:  []Rule{{Kind: OneOf, Fields: []string{"background_prompt", "background_reference"}, Why: "the API needs background_prompt or background_reference"}},
		Output: Output{Rule: SameAsInput},
		Async:  true,
	},
	{
		Service: "edit/search-and-recolor", Title: "Search and Recolor",
		Fields: []Field{image("image", true, commonAspect), prompt(true), text("select_prompt", true), negative(), number("grow_mask", 0, 20, "3"), seed(), format(), style()},
		Output: Output{Rule: SameAsInput},
	},
	{
		Service: "edit/search-and-replace", Title: "Search and Replace",
		Fields: []Field{image("image", true, commonAspect), prompt(true), text("search_prompt", true), negative(), number("grow_mask", 0, 20, "3"), seed(), format(), style()},
		Output: Output{Rule: SameAsInput},
	},
	{
		Service: "generate/core", Title: "Stable Image Core",
		Fields: []Field{prompt(true), aspect(), negative(), seed(), style(), format()},
		Output: Output{Rule: ByAspect, Scale: 1.5},
	},
	{
		Service: "generate/sd3", Title: "Stable Diffusion 3.5",
		Fields: []Field{
			prompt(true),
			{Name: "mode", Type: Enum, Enum: []string{"text-to-image", "image-to-image"}, Default: "text-to-image", Derived: true},
			image("image", false, Limits{MinSide: 64}), number("strength", 0, 1, ""), aspect(),
			{Name: "model", Type: Enum, Enum: sd35Models, Default: "sd3.5-large"},
			seed(), format(), style(), negative(), number("cfg_scale", 1, 10, ""),
		},
		Rules:    imageToImage,
		Output:   Output{Rule: ByAspect},
		SpecBugs: []string{"model"}, // the spec's enum omits sd3.5-flash, which the API accepts
	},
	{
		Service: "generate/ultra", Title: "Stable Image Ultra",
		Fields: []Field{prompt(true), negative(), aspect(), seed(), format(), image("image", false, Limits{MinSide: 64, MaxSide: 16384, MinPixels: 4096}), style(), number("strength", 0, 1, "")},
		Rules:  imageToImage,
		Output: Output{Rule: ByAspect},
	},
	{
		Service: "upscale/conservative", Title: "Conservative",
		Fields: []Field{image("image", true, commonAspect), prompt(true), negative(), seed(), format(), number("creativity", 0.2, 0.5, "0.35")},
		Output: Output{Rule: UpscaleToArea, Area: 9_685_000},
	},
	{
		Service: "upscale/creative", Title: "Creative Upscale",
		Fields: []Field{image("image", true, Limits{MinSide: 64, MinPixels: 4096, MaxPixels: 1_048_576}), prompt(true), negative(), format(), seed(), number("creativity", 0.1, 0.5, "0.3"), style()},
		Output: Output{Rule: UpscaleToArea, Area: 9_935_000},
		Async:  true,
	},
	{
		Service: "upscale/fast", Title: "Fast",
		Fields: []Field{image("image", true, Limits{MinSide: 32, MaxSide: 1536, MinPixels: 1024, MaxPixels: 1_048_576}), format()},
		Output: Output{Rule: ScaledInput, Scale: 4},
	},
}

// All returns every operation, sorted by service. The operations share
// their slices with the catalogue; treat them as read-only.
func All() []Operation { return slices.Clone(operations) }

// Services returns every service name, sorted.
func Services() []string {
	out := make([]string, len(operations))
	for i, o := range operations {
		out[i] = o.Service
	}
	return out
}

// Lookup returns the operation of a service, e.g. "generate/core". The
// result is shared; treat it as read-only.
func Lookup(service string) (*Operation, bool) {
	i, ok := slices.BinarySearchFunc(operations, service, func(o Operation, s string) int {
		switch {
		case o.Service < s:
			return -1
		case o.Service > s:
			return 1
		}
		return 0
	})
	if !ok {
		return nil, false
	}
	return &operations[i], true
}

// FieldNames returns the names of every field of every operation, sorted and
// without repeats.
func FieldNames() []string {
	var out []string
	for _, o := range operations {
		for _, f := range o.Fields {
			out = append(out, f.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
