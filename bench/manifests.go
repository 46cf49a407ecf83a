package main

import (
	"bufio"
	"cmp"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"strings"
)

// The manifests the bench plans and runs are generated, so their size is
// a flag away and nothing large is checked in. Every job is a generate/core
// job, the service the README's quick start uses.

// explicitJob returns the id, prompt and seed of job i (from 0) of an
// explicit manifest. Prompts are about 90 characters and differ in words as
// well as in number, as a real batch's would. variant makes a different
// batch of the same shape (another run's manifest).
func explicitJob(variant string, i int) (id, prompt string, seed int) {
	subjects := [...]string{"lighthouse", "fox", "harbour", "glasshouse", "tram", "orchard", "violin", "comet"}
	styles := [...]string{"watercolor painting", "ink drawing", "oil painting", "pastel sketch", "linocut print"}
	times := [...]string{"at dusk", "at dawn", "in fog", "under snow", "at noon", "in rain"}
	id = fmt.Sprintf("%sjob-%07d", variant, i+1)
	prompt = fmt.Sprintf("a %s of a %s on a rocky northern coast %s, soft light, variation %07d",
		styles[i%len(styles)], subjects[i/len(styles)%len(subjects)], times[i%len(times)], i+1)
	return id, prompt, i + 1
}

// explicitSpec describes an explicit manifest: one job entry per job.
type explicitSpec struct {
	jobs    int
	variant string // prefix of every id: "" or, for a second manifest, "b-"
	// service is the manifest's top-level service; "" is generate/core.
	service string
	image   string // the image input set in defaults; "" sets none
	format  string // output_format set in defaults; "" sets none
	// edit, when true, makes the manifest the head of a diff: every tenth
	// job's prompt is changed, every hundredth job is gone and 1% more
	// jobs are added at the end.
	edit bool
}

// writeExplicit writes the manifest s describes to path and returns its
// size in bytes.
func writeExplicit(path string, s explicitSpec) (int64, error) {
	return writeFile(path, func(w *bufio.Writer) {
		fmt.Fprintf(w, "version: 1\nservice: %s\n", cmp.Or(s.service, "generate/core"))
		if s.format != "" || s.image != "" {
			w.WriteString("defaults:\n")
		}
		if s.format != "" {
			fmt.Fprintf(w, "  output_format: %s\n", s.format)
		}
		if s.image != "" {
			fmt.Fprintf(w, "  image: %s\n", s.image)
		}
		w.WriteString("jobs:\n")
		n := s.jobs
		if s.edit {
			n += s.jobs / 100
		}
		for i := range n {
			if s.edit && i < s.jobs && i%100 == 99 {
				continue
			}
			id, prompt, seed := explicitJob(s.variant, i)
			if s.edit && i%10 == 3 {
				prompt += ", wider"
			}
			fmt.Fprintf(w, "  - id: %s\n    prompt: %s\n    seed: %d\n", id, prompt, seed)
		}
	})
}

// runSpec is the manifest of jobs jobs that every run measures: an edit of
// one small image (input.png beside the manifest) per job, each with its
// own prompt and seed, answered in WebP. A small image keeps batch's
// free-space check (width × height × 3 bytes for every image still to make)
// inside a tmpfs at 100,000 jobs, where generate/core's 1536×1536 would ask
// for 665 GiB; WebP is checked by its header, where a PNG answer is inflated
// in full to check every row, so the measure is of what the clients do.
func runSpec(jobs int, variant string) explicitSpec {
	return explicitSpec{jobs: jobs, variant: variant, service: runService, image: inputName, format: "webp"}
}

// runService is the service of every run, and inputName its image input,
// written by writeInput.
const (
	runService = "edit/inpaint"
	inputName  = "input.png"
	inputSide  = 64 // pixels: the smallest side edit/inpaint accepts
)

// writeInput writes the runs' image input: an inputSide-square PNG of a
// smooth gradient.
func writeInput(path string) error {
	img := image.NewNRGBA(image.Rect(0, 0, inputSide, inputSide))
	for y := range inputSide {
		for x := range inputSide {
			img.Set(x, y, color.NRGBA{R: uint8(4 * x), G: uint8(4 * y), B: 128, A: 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeJobsTSV writes the jobs of the explicit manifest s to path as the
// keep-alive loop and GNU parallel read them: id, prompt and seed a line,
// tab-separated.
func writeJobsTSV(path string, s explicitSpec) error {
	_, err := writeFile(path, func(w *bufio.Writer) {
		for i := range s.jobs {
			id, prompt, seed := explicitJob(s.variant, i)
			fmt.Fprintf(w, "%s\t%s\t%d\n", id, prompt, seed)
		}
	})
	return err
}

// matrixSpec describes a matrix manifest: one job whose prompt of about
// 1,900 characters names two matrix keys, swept with the seed.
type matrixSpec struct {
	subjects, places, seeds int // the matrix's dimensions
}

func (s matrixSpec) jobs() int { return s.subjects * s.places * s.seeds }

// matrixPrompt is the template of every matrix job: a long art-direction
// prompt of the kind that saturates the API's prompt field, with the two
// placeholders near its start. Rendered, it is about 1,900 characters.
func matrixPrompt() string {
	var b strings.Builder
	b.WriteString("a large-format photograph of {subject} standing in {place}")
	clauses := [...]string{
		"shot on a medium-format camera with a slightly wide lens at eye level",
		"soft directional light from a tall window on the left, gentle fill from the right",
		"muted earthy palette with a single saturated accent colour in the foreground",
		"fine film grain, natural skin and material textures, no retouching",
		"shallow depth of field that keeps the subject sharp and lets the background fall away",
		"late afternoon atmosphere with dust catching the light and long soft shadows",
		"composition on the rule of thirds with generous negative space above the subject",
		"reflections in nearby glass and polished surfaces rendered with physical accuracy",
		"background details that reward a second look without competing with the subject",
		"a calm, contemplative mood, quiet and unhurried, as in a documentary portrait",
	}
	for b.Len() < 1800 {
		for _, c := range clauses {
			if b.Len() >= 1800 {
				break
			}
			b.WriteString(", ")
			b.WriteString(c)
		}
	}
	return b.String()
}

// matrixSubject and matrixPlace are the i-th values (from 0) of the
// matrix's two keys, about 40 characters each.
func matrixSubject(i int) string {
	adjectives := [...]string{"weathered", "gilded", "moss-covered", "sun-bleached", "lacquered", "rusted", "polished", "hand-carved"}
	materials := [...]string{"bronze", "marble", "oak", "porcelain", "cast-iron", "sandstone"}
	things := [...]string{"statue of a sea captain", "rocking horse", "lighthouse keeper's lamp", "grandfather clock", "ship's figurehead"}
	return fmt.Sprintf("%s %s %s %03d", adjectives[i%len(adjectives)], materials[i/len(adjectives)%len(materials)], things[i%len(things)], i)
}

func matrixPlace(i int) string {
	places := [...]string{"a flooded cathedral nave", "an abandoned botanical glasshouse", "a night market in the rain", "a snowed-in mountain railway station", "a sunlit textile mill"}
	return fmt.Sprintf("%s %03d", places[i%len(places)], i)
}

// promptChars is the length of the matrix's first job's prompt, rendered.
func (s matrixSpec) promptChars() int {
	r := strings.NewReplacer("{subject}", matrixSubject(0), "{place}", matrixPlace(0))
	return len(r.Replace(matrixPrompt()))
}

// writeMatrix writes the matrix manifest s describes to path and returns
// its size in bytes.
func writeMatrix(path string, s matrixSpec) (int64, error) {
	list := func(w *bufio.Writer, key string, n int, value func(i int) string) {
		fmt.Fprintf(w, "      %s: [", key)
		for i := range n {
			if i > 0 {
				w.WriteString(", ")
			}
			w.WriteString(value(i))
		}
		w.WriteString("]\n")
	}
	return writeFile(path, func(w *bufio.Writer) {
		w.WriteString("version: 1\nservice: generate/core\njobs:\n  - id: sweep\n")
		fmt.Fprintf(w, "    prompt: %q\n    matrix:\n", matrixPrompt())
		list(w, "subject", s.subjects, matrixSubject)
		list(w, "place", s.places, matrixPlace)
		list(w, "seed", s.seeds, func(i int) string { return fmt.Sprint(i + 1) })
	})
}

// writeFile writes what fill writes to path and returns the file's size.
func writeFile(path string, fill func(w *bufio.Writer)) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fill(w)
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
