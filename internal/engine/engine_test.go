package engine

import (
	"errors"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"
)

func TestCatalogueSortedAndComplete(t *testing.T) {
	ids := IDs()
	if !slices.IsSorted(ids) {
		t.Errorf("IDs() = %v, not sorted (Lookup binary-searches)", ids)
	}
	for _, e := range All() {
		got, ok := Lookup(e.ID)
		if !ok || got.ID != e.ID {
			t.Errorf("Lookup(%q) = %v, %v", e.ID, got.ID, ok)
		}
		if err := e.CheckSize(e.DefaultSize[0], e.DefaultSize[1]); err != nil {
			t.Errorf("%s rejects its own default size: %v", e.ID, err)
		}
		if err := e.CheckSteps(e.DefaultSteps); err != nil {
			t.Errorf("%s rejects its own default steps: %v", e.ID, err)
		}
	}
	if _, ok := Lookup("stable-diffusion-v9"); ok {
		t.Error("Lookup found an engine that does not exist")
	}
}

func TestCheckSize(t *testing.T) {
	tests := []struct {
		engine string
		w, h   int
		name   string // the API's error name; "" when accepted
	}{
		{"stable-diffusion-xl-1024-v1-0", 1024, 1024, ""},
		{"stable-diffusion-xl-1024-v1-0", 640, 1536, ""},
		{"stable-diffusion-xl-1024-v1-0", 512, 512, "invalid_sdxl_v1_dimensions"},
		{"stable-diffusion-xl-1024-v1-0", 1536, 1536, "invalid_sdxl_v1_dimensions"},
		{"stable-diffusion-xl-1024-v0-9", 1216, 832, ""},
		{"stable-diffusion-v1-6", 320, 320, ""},
		{"stable-diffusion-v1-6", 1536, 1536, ""},
		{"stable-diffusion-v1-6", 256, 512, "invalid_height_or_width"},
		{"stable-diffusion-v1-6", 1600, 512, "invalid_height_or_width"},
		{"stable-diffusion-v1-6", 500, 512, "invalid_height_or_width"},
		{"stable-diffusion-v1-5", 512, 512, ""},
		{"stable-diffusion-v1-5", 1024, 1024, ""},
		{"stable-diffusion-v1-5", 128, 2048, ""}, // 262,144 px: the lower bound
		{"stable-diffusion-v1-5", 448, 448, "invalid_pixel_count"},
		{"stable-diffusion-v1-5", 1088, 1024, "invalid_pixel_count"},
		{"stable-diffusion-v1-5", 64, 4096, "invalid_height_or_width"},
		{"stable-diffusion-v1-5", 520, 512, "invalid_height_or_width"},
		{"stable-diffusion-768-v2-1", 768, 768, ""},
		{"stable-diffusion-768-v2-1", 512, 1024, "invalid_pixel_count"},
		{"stable-diffusion-xl-beta-v2-2-2", 512, 896, ""},
		{"stable-diffusion-xl-beta-v2-2-2", 896, 512, ""},
		{"stable-diffusion-xl-beta-v2-2-2", 640, 640, "invalid_sdxl_v222_dimensions"},
		{"stable-diffusion-xl-beta-v2-2-2", 512, 960, "invalid_sdxl_v222_dimensions"},
	}
	for _, tt := range tests {
		e, ok := Lookup(tt.engine)
		if !ok {
			t.Fatalf("Lookup(%q) failed", tt.engine)
		}
		err := e.CheckSize(tt.w, tt.h)
		var se *SizeError
		switch {
		case tt.name == "" && err != nil:
			t.Errorf("%s.CheckSize(%d, %d) = %v, want nil", tt.engine, tt.w, tt.h, err)
		case tt.name != "" && (!errors.As(err, &se) || se.Name != tt.name):
			t.Errorf("%s.CheckSize(%d, %d) = %v, want a %s error", tt.engine, tt.w, tt.h, err, tt.name)
		}
	}
}

func TestCheckSteps(t *testing.T) {
	tests := []struct {
		engine string
		steps  int
		ok     bool
	}{
		{"stable-diffusion-v1-5", 10, true},
		{"stable-diffusion-v1-5", 150, true},
		{"stable-diffusion-v1-5", 9, false},
		{"stable-diffusion-v1-5", 151, false},
		{"stable-diffusion-xl-1024-v1-0", 50, true},
		{"stable-diffusion-xl-1024-v1-0", 51, false},
		{"stable-diffusion-v1-6", 10, true},
	}
	for _, tt := range tests {
		e, _ := Lookup(tt.engine)
		if err := e.CheckSteps(tt.steps); (err == nil) != tt.ok {
			t.Errorf("%s.CheckSteps(%d) = %v, want ok=%v", tt.engine, tt.steps, err, tt.ok)
		}
	}
}

// The v1 spec of February 2025 (nod-ai/StabilityAI-client-typescript
// openapi.json @ e65723a, dated 2025-02-26) documents exactly the engines
// still served then: an engine it names must not be retired before that
// day, and one it leaves out must be.
func TestRetiredAgreesWithTheSpecOf2025(t *testing.T) {
	const specDay = "2025-02-26"
	data, err := os.ReadFile("../prismtest/stability-v1-openapi-2025-02.json")
	if err != nil {
		t.Fatal(err)
	}
	documented := make(map[string]bool)
	for _, id := range regexp.MustCompile(`stable-diffusion-[a-z0-9-]*[a-z0-9]`).FindAllString(string(data), -1) {
		documented[id] = true
	}
	if len(documented) == 0 {
		t.Fatal("the 2025 spec names no engine")
	}
	for _, e := range All() {
		if e.Retired != "" {
			if _, err := time.Parse(time.DateOnly, e.Retired); err != nil {
				t.Errorf("%s: Retired %q is not a YYYY-MM-DD date", e.ID, e.Retired)
			}
		}
		servedThen := e.Retired == "" || e.Retired > specDay
		if documented[e.ID] != servedThen {
			t.Errorf("%s: Retired %q, but the %s spec documents it: %v", e.ID, e.Retired, specDay, documented[e.ID])
		}
		delete(documented, e.ID)
	}
	for id := range documented {
		t.Errorf("the %s spec documents engine %s, which the catalogue lacks", specDay, id)
	}
}
