package cost

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestOverridesPrecedence(t *testing.T) {
	o, err := ReadOverrides("testdata/overrides/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := mustSheet(t, "dreamstudio-2022")
	s := base.WithOverrides(o)
	if s.ID != "dreamstudio-2022" || s.Overrides != "testdata/overrides/good.yaml" {
		t.Errorf("WithOverrides: ID %q, Overrides %q", s.ID, s.Overrides)
	}
	tests := []struct {
		name                 string
		engine               string
		width, height, steps int
		want                 string
	}{
		{"override beats sheet", "stable-diffusion-v1-5", 1024, 1024, 150, "0.25"},
		{"first override wins", "stable-diffusion-v1-5", 512, 512, 10, "0.25"},
		{"override adds an engine", "my-finetune", 64, 64, 1, "7.0"},
		{"pattern override, rounded half-up to 0.01", "stable-diffusion-xl-1024-v1-0", 1024, 1024, 31, "1.03"},
		{"sheet still prices the rest", "stable-diffusion-512-v2-1", 512, 512, 50, "1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ImagePrice(tt.engine, tt.width, tt.height, tt.steps)
			if err != nil || got.String() != tt.want {
				t.Errorf("ImagePrice(%s, %dx%d, %d) = %v, %v, want %s", tt.engine, tt.width, tt.height, tt.steps, got, err, tt.want)
			}
		})
	}
	// The sheet itself is unchanged.
	if got, err := base.ImagePrice("stable-diffusion-v1-5", 512, 512, 50); err != nil || got != Credit {
		t.Errorf("base sheet after WithOverrides: ImagePrice = %v, %v, want 1.0", got, err)
	}
	if got := s.Rules[1].Source; got != "testdata/overrides/good.yaml:7" {
		t.Errorf("default source of an override rule = %q, want FILE:LINE", got)
	}
	if s.WithOverrides(nil) != s {
		t.Error("WithOverrides(nil) returned a different sheet")
	}
}

func TestOverridesAddEnginesOnly(t *testing.T) {
	o, err := ReadOverrides("testdata/overrides/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := mustSheet(t, "sdxl-2024")
	if _, err := base.ImagePrice("my-finetune", 512, 512, 30); !errors.Is(err, ErrNoPrice) {
		t.Fatalf("sdxl-2024 prices my-finetune without overrides: %v", err)
	}
	s := base.WithOverrides(o)
	if got, err := s.ImagePrice("my-finetune", 512, 512, 30); err != nil || got != 7*Credit {
		t.Errorf("ImagePrice(my-finetune) with overrides = %v, %v, want 7.0", got, err)
	}
	if _, err := s.ImagePrice("stable-diffusion-512-v2-1", 512, 512, 30); !errors.Is(err, ErrNoPrice) {
		t.Errorf("ImagePrice(unpriced engine) error = %v, want ErrNoPrice", err)
	}
}

func TestOverridesServices(t *testing.T) {
	o, err := ReadOverrides("testdata/overrides/services.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, sheet, service, model string
		want                        string // "" for ErrNoPrice
	}{
		{"override beats sheet", DefaultSheet, "generate/core", "", "2.5"},
		{"model listed", DefaultSheet, "generate/sd3", "sd3.5-large", "6.0"},
		{"model pattern", DefaultSheet, "generate/sd3", "sd3.5-large-turbo", "6.0"},
		{"model not overridden", DefaultSheet, "generate/sd3", "sd3.5-medium", "3.5"},
		{"service pattern", DefaultSheet, "edit/outpaint", "", "4.75"},
		{"sheet prices the rest", DefaultSheet, "upscale/creative", "", "60.0"},
		{"override adds a service", "dreamstudio-2022", "generate/core", "", "2.5"},
		{"pattern adds services", "dreamstudio-2022", "edit/erase", "", "4.75"},
		{"nothing prices the rest", "dreamstudio-2022", "upscale/fast", "", ""},
		{"nor an unlisted model", "dreamstudio-2022", "generate/sd3", "sd3.5-flash", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSheet(t, tt.sheet).WithOverrides(o)
			got, err := s.ServicePrice(tt.service, tt.model)
			switch {
			case tt.want == "" && !errors.Is(err, ErrNoPrice):
				t.Errorf("ServicePrice(%s, %q) = %v, %v, want ErrNoPrice", tt.service, tt.model, got, err)
			case tt.want != "" && (err != nil || got.String() != tt.want):
				t.Errorf("ServicePrice(%s, %q) = %v, %v, want %s", tt.service, tt.model, got, err, tt.want)
			}
		})
	}
	// A services rule never prices an engine, nor an engines rule a service.
	s := mustSheet(t, "dreamstudio-2022").WithOverrides(o)
	if got, err := s.ImagePrice("stable-diffusion-xl-1024-v1-0", 1024, 1024, 30); err != nil || got.String() != "5.6" {
		t.Errorf("ImagePrice(SDXL 1.0) with services overrides = %v, %v, want the sheet's 5.6", got, err)
	}
}

// Retirement is a fact about the API, not a price: an override rule cannot
// price an engine retired before the sheet took effect.
func TestOverridesDoNotRevive(t *testing.T) {
	o, err := ReadOverrides("testdata/overrides/services.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := mustSheet(t, "v1-2023").WithOverrides(o).ImagePrice("stable-diffusion-v1-5", 512, 512, 30); err != nil || got.String() != "0.25" {
		t.Errorf("ImagePrice(v1-5) on v1-2023 with overrides = %v, %v, want 0.25", got, err)
	}
	_, err = mustSheet(t, DefaultSheet).WithOverrides(o).ImagePrice("stable-diffusion-v1-5", 512, 512, 30)
	if !errors.Is(err, ErrRetired) {
		t.Errorf("ImagePrice(v1-5) on %s with overrides: error %v, want ErrRetired", DefaultSheet, err)
	}
}

func TestReadOverridesErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/overrides/bad_*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad override files: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			o, err := ReadOverrides(file)
			if err == nil {
				t.Fatalf("ReadOverrides(%s) = %+v, want an error", file, o)
			}
			checkGolden(t, "overrides/"+name+".golden", err.Error()+"\n")
		})
	}
	_, err = ReadOverrides("testdata/overrides/missing.yaml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadOverrides(missing file) error = %v, want fs.ErrNotExist", err)
	}
}
