// Package manifest reads batch manifests: strict YAML with positions, defaults,
// matrix expansion into jobs with stable ids, and validation that reports
// every problem at once as FILE:LINE:COL: message.
package manifest

// Manifest is a loaded, validated and expanded manifest (version 1).
type Manifest struct {
	Path        string // the file it was read from, as given
	Version     int    // always 1
	Name        string // optional display name; "" when absent
	Engine      string // default engine id; "" when absent (every job then names one)
	Pricing     string // price sheet id; "" means the default sheet
	Budget      string // credit ceiling as the decimal text written, e.g. "120" or "12.5"; "" when absent
	Output      string // output folder, already joined to the manifest's folder; "" when absent
	Concurrency string // "auto", a positive integer as text, or "" when absent
	Rate        string // N/DURATION as written, e.g. "150/10s"; "" when absent
	Jobs        []Job  // expanded jobs, in manifest order (matrix rows in key order)

	keyPos map[string][2]int // line, column of each top-level key
}

// Prompt is one of the API's text_prompts: a text and its weight. A negative
// weight makes it a negative prompt.
type Prompt struct {
	Text   string  `json:"text"`
	Weight float64 `json:"weight"`
}

// Job is one expanded text-to-image request, with every default filled in.
// Jobs of one manifest entry may share their Prompts and CfgScale backing
// memory; treat them as read-only.
type Job struct {
	ID      string   // stable, unique, filesystem-safe id: base id plus matrix values
	Base    string   // the id of the manifest entry it came from (groups matrix rows)
	Vars    []Var    // the matrix values that made this job, in key order; nil when not from a matrix
	Line    int      // line of the manifest entry (1-based)
	Column  int      // column of the manifest entry (1-based)
	Engine  string   // engine id
	Prompts []Prompt // text_prompts as sent; negative_prompt becomes weight -1
	Width   int      // pixels
	Height  int      // pixels
	Steps   int      // diffusion steps
	Samples int      // images per request, 1–10; 1 when not given
	Seed    uint32   // 0 means the API picks a random seed
	// CfgScale is the API's cfg_scale, 0–35; nil when not given (the API uses 7).
	CfgScale           *float64
	Sampler            string // "" lets the API choose
	StylePreset        string // "" for none
	ClipGuidancePreset string // "" for the API's default (NONE)
}

// Var is one matrix value of an expanded job: a placeholder or setting name
// and the value it took, as text.
type Var struct {
	Key   string
	Value string
}

// KeyPos returns the line and column (1-based) of a top-level key of the
// manifest, e.g. "pricing", so callers can report problems with its value;
// it returns 1, 1 when the key is absent.
func (m *Manifest) KeyPos(key string) (line, col int) {
	if pos, ok := m.keyPos[key]; ok {
		return pos[0], pos[1]
	}
	return 1, 1
}
