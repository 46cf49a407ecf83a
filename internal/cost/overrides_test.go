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
	base := mustSheet(t, DefaultSheet)
	s := base.WithOverrides(o)
	if s.ID != DefaultSheet || s.Overrides != "testdata/overrides/good.yaml" {
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
