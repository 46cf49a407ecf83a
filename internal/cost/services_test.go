package cost

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/catalog"
)

// specCredits reads the "### Credits" text of every Stable Image endpoint of
// the September 2026 spec and returns the price per service, and per model
// for generate/sd3 (keyed "generate/sd3 sd3.5-large"), as decimal text.
func specCredits(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../prismtest/stability-v2beta-openapi-2026-09.json")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]struct {
			Description string `json:"description"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	flat := regexp.MustCompile(`(?:Flat rate of|uses) ([0-9]+(?:\.[0-9]+)?) credits? per successful`)
	// e.g. "- **SD 3.5 Large Turbo**: Flat rate of 4 credits per successful generation."
	perModel := regexp.MustCompile(`(?m)^- \*\*SD 3\.5 ([A-Za-z ]+)\*\*: Flat rate of ([0-9]+(?:\.[0-9]+)?) credits? per successful`)
	prices := make(map[string]string)
	for path, ops := range spec.Paths {
		service, ok := strings.CutPrefix(path, "/v2beta/stable-image/")
		if !ok || ops["post"].Description == "" {
			continue
		}
		_, credits, ok := strings.Cut(ops["post"].Description, "### Credits")
		if !ok {
			t.Errorf("%s has no ### Credits section", path)
			continue
		}
		if ms := perModel.FindAllStringSubmatch(credits, -1); ms != nil {
			for _, m := range ms {
				model := "sd3.5-" + strings.ReplaceAll(strings.ToLower(m[1]), " ", "-")
				prices[service+" "+model] = m[2]
			}
			continue
		}
		m := flat.FindStringSubmatch(credits)
		if m == nil {
			t.Errorf("%s: no price in %q", path, credits)
			continue
		}
		prices[service] = m[1]
	}
	return prices
}

// The stability-2025-08 sheet charges what the spec's "### Credits" text
// says, for every service and every sd3 model.
func TestStability2025MatchesSpecCredits(t *testing.T) {
	s := mustSheet(t, "stability-2025-08")
	prices := specCredits(t)
	if len(prices) < len(catalog.Services()) {
		t.Fatalf("read %d prices from the spec, want at least %d: %v", len(prices), len(catalog.Services()), prices)
	}
	for key, text := range prices {
		service, model, _ := strings.Cut(key, " ")
		want, err := ParseCredits(text)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ServicePrice(service, model)
		if err != nil || got != want {
			t.Errorf("ServicePrice(%s, %q) = %v, %v; the spec says %s", service, model, got, err, text)
		}
	}
}

// Every service of the catalogue, with every model it takes, has a price in
// the stability-2025-08 sheet, and the spec's credits text prices every
// model the catalogue accepts (sd3.5-flash included, which the spec's enum
// omits).
func TestStability2025PricesEveryService(t *testing.T) {
	s := mustSheet(t, "stability-2025-08")
	prices := specCredits(t)
	for _, op := range catalog.All() {
		models := []string{""}
		if f, ok := op.Field("model"); ok {
			models = f.Enum
		}
		for _, m := range models {
			if _, err := s.ServicePrice(op.Service, m); err != nil {
				t.Errorf("ServicePrice(%s, %q): %v", op.Service, m, err)
			}
			key := op.Service
			if m != "" {
				key += " " + m
			}
			if _, ok := prices[key]; !ok {
				t.Errorf("the spec's credits text does not price %s", key)
			}
		}
	}
}

func TestServicePrice(t *testing.T) {
	tests := []struct {
		sheet, service, model string
		want                  string // the price, or the error's text
	}{
		{"stability-2025-08", "generate/core", "", "3.0"},
		{"stability-2025-08", "generate/core", "sd3.5-large", "3.0"}, // a rule without models takes any
		{"stability-2025-08", "generate/sd3", "sd3.5-large-turbo", "4.0"},
		{"stability-2025-08", "upscale/conservative", "", "40.0"},
		{"stability-2025-08", "control/style-transfer", "", "8.0"},
		{"stability-2025-08", "generate/sd3", "sd3.5-huge",
			"generate/sd3 with model sd3.5-huge has no price in stability-2025-08 (from 2025-08-01), which prices it for model " +
				"sd3.5-large, sd3.5-large-turbo, sd3.5-medium, sd3.5-flash; no embedded price sheet prices it"},
		{"stability-2025-08", "generate/stable-cascade", "",
			"generate/stable-cascade has no price in stability-2025-08 (from 2025-08-01); no embedded price sheet prices it"},
		{"stability-2025-08", "", "", "cannot price a Stable Image job without a service"},
		{"sdxl-2024", "generate/ultra", "",
			"generate/ultra has no price in sdxl-2024 (2024-10-01 to 2025-07-31); price it with --pricing stability-2025-08"},
		{"v1-2023", "generate/sd3", "sd3.5-medium",
			"generate/sd3 with model sd3.5-medium has no price in v1-2023 (2022-12-01 to 2023-10-02); price it with --pricing stability-2025-08"},
	}
	for _, tt := range tests {
		t.Run(tt.sheet+" "+tt.service+" "+tt.model, func(t *testing.T) {
			got, err := mustSheet(t, tt.sheet).ServicePrice(tt.service, tt.model)
			if err != nil {
				if !errors.Is(err, ErrNoPrice) || errors.Is(err, ErrRetired) || err.Error() != tt.want {
					t.Errorf("ServicePrice(%q, %q) error = %v, want ErrNoPrice %q", tt.service, tt.model, err, tt.want)
				}
				return
			}
			if got.String() != tt.want {
				t.Errorf("ServicePrice(%q, %q) = %v, want %s", tt.service, tt.model, got, tt.want)
			}
		})
	}
}
