package runner

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// TestHeldInputs: a small input file is read once, as it is hashed, and
// every request that sends it carries those bytes, even after the file
// changed on disk; a file over heldFile is read from disk at each send.
func TestHeldInputs(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small.png")
	big := filepath.Join(dir, "big.png")
	smallData := fakePNG(1000)
	if err := os.WriteFile(small, smallData, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, fakePNG(heldFile+1), 0o644); err != nil {
		t.Fatal(err)
	}
	input := func(path string) manifest.Input { return manifest.Input{Field: "image", Path: path} }
	jobs := []manifest.Job{
		pipeJob("s1", "control/sketch", input(small)),
		pipeJob("s2", "control/sketch", input(small)),
		pipeJob("b1", "control/sketch", input(big)),
	}
	gen := &pipeGen{}
	started := false
	gen.before = func(_ context.Context, id string) error {
		if !started {
			started = true
			// The files change once the run has hashed them: what is sent
			// of a held file is what was hashed.
			return os.WriteFile(small, fakePNG(2000), 0o644)
		}
		return nil
	}
	cfg := fastConfig(t)
	cfg.Concurrency = 1 // before runs one request at a time
	if _, err := runJobs(t.Context(), cfg, gen, jobs, prices(len(jobs))); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s1", "s2"} {
		if f := imageField(gen.request(id)); f.Value != small || !bytes.Equal(f.Data, smallData) {
			t.Errorf("%s sent %s with %d bytes held, want %s's %d bytes as hashed", id, f.Value, len(f.Data), small, len(smallData))
		}
	}
	if f := imageField(gen.request("b1")); f.Value != big || f.Data != nil {
		t.Errorf("b1 sent %s with %d bytes held, want %s read from disk", f.Value, len(f.Data), big)
	}
}

// TestHeldInputsLimits: a file is held when it is not empty, at most
// heldFile bytes, and fits in what is left of heldTotal; only image
// fields are given held bytes.
func TestHeldInputsLimits(t *testing.T) {
	h := &heldInputs{}
	tests := []struct {
		size int64
		want bool
	}{{0, false}, {1, true}, {heldFile, true}, {heldFile + 1, false}}
	for _, tt := range tests {
		if got := h.fits(tt.size); got != tt.want {
			t.Errorf("fits(%d) = %v, want %v", tt.size, got, tt.want)
		}
	}
	for i := int64(0); i < heldTotal/heldFile; i++ {
		h.put(filepath.Join("f", string(rune('a'+i%26)), string(rune('a'+i/26))), make([]byte, heldFile))
	}
	if h.total != heldTotal || h.fits(1) {
		t.Errorf("after %d full files: total %d, fits(1) = %v; want %d and false", heldTotal/heldFile, h.total, h.fits(1), heldTotal)
	}
	var none *heldInputs
	if none.fits(1) {
		t.Error("a nil *heldInputs fits a file")
	}
	h = &heldInputs{}
	h.put("in.png", []byte("png"))
	req := stability.Request{Service: "edit/inpaint", Fields: []stability.Field{
		{Name: "image", Value: "in.png"}, {Name: "prompt", Value: "in.png"}, {Name: "mask", Value: "other.png"},
	}}
	h.attach(&req)
	if got := req.Fields; string(got[0].Data) != "png" || got[1].Data != nil || got[2].Data != nil {
		t.Errorf("attach gave %q, %q, %q; want the image alone its held bytes", got[0].Data, got[1].Data, got[2].Data)
	}
}

// imageField is the request's field "image".
func imageField(req stability.Request) stability.Field {
	for _, f := range req.Fields {
		if f.Name == "image" {
			return f
		}
	}
	return stability.Field{}
}

// fakePNG is n bytes that start as a PNG does.
func fakePNG(n int) []byte {
	b := make([]byte, n)
	copy(b, "\x89PNG\r\n\x1a\n")
	return b
}
