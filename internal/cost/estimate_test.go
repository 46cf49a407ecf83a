package cost

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/manifest"
)

func job(id, engine string, w, h, steps, samples int) manifest.Job {
	return manifest.Job{ID: id, Engine: engine, Width: w, Height: h, Steps: steps, Samples: samples}
}

func TestEstimate(t *testing.T) {
	s := mustSheet(t, "dreamstudio-2022")
	jobs := []manifest.Job{
		job("a", "stable-diffusion-v1-5", 512, 768, 50, 1),       // 2.4
		job("b", "stable-diffusion-v1-5", 512, 768, 50, 3),       // 3 × 2.4
		job("c", "stable-diffusion-512-v2-1", 768, 1024, 10, 10), // 10 × 1.3
		job("d", "stable-diffusion-v1-5", 512, 512, 50, 2),       // 2 × 1.0
	}
	b, err := Estimate(jobs, s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"2.4", "7.2", "13.0", "2.0"}
	if len(b.Jobs) != len(want) {
		t.Fatalf("Estimate: %d jobs, want %d", len(b.Jobs), len(want))
	}
	for i, w := range want {
		if b.Jobs[i].String() != w {
			t.Errorf("Estimate: job %s = %v, want %s", jobs[i].ID, b.Jobs[i], w)
		}
	}
	if b.Total.String() != "24.6" {
		t.Errorf("Estimate: total = %v, want 24.6", b.Total)
	}
}

func TestEstimateSumsExactly(t *testing.T) {
	// 512²@30 on v1-2023 is 0.200053 µ-exact; a float sum of 0.20005272
	// a million times would drift, integer micro-credits do not.
	s := mustSheet(t, "v1-2023")
	jobs := make([]manifest.Job, 1000)
	for i := range jobs {
		jobs[i] = job(fmt.Sprint(i), "stable-diffusion-v1-5", 512, 512, 30, 1)
	}
	b, err := Estimate(jobs, s)
	if err != nil || b.Total != 1000*200053 {
		t.Fatalf("Estimate total = %v, %v, want 200.053", b.Total, err)
	}
}

func TestEstimateReportsEveryDistinctProblem(t *testing.T) {
	s := mustSheet(t, "sdxl-2024")
	jobs := []manifest.Job{
		job("ok", "stable-diffusion-xl-1024-v1-0", 1024, 1024, 30, 2),
		job("old-1", "stable-diffusion-v1-5", 512, 512, 50, 1),
		job("typo", "stable-diffusion-xl", 1024, 1024, 30, 1),
		job("old-2", "stable-diffusion-v1-5", 512, 512, 50, 1),
		job("old-3", "stable-diffusion-v1-5", 512, 512, 50, 4),
		job("none", "stable-diffusion-xl-1024-v1-0", 1024, 1024, 30, 0),
	}
	b, err := Estimate(jobs, s)
	if !errors.Is(err, ErrNoPrice) {
		t.Fatalf("Estimate error = %v, want ErrNoPrice", err)
	}
	lines := strings.Split(err.Error(), "\n")
	wantPrefixes := []string{
		`job "old-1" (and 2 more): stable-diffusion-v1-5 was retired 2023-11-15; price it with --pricing v1-2023`,
		`job "typo": no price for engine "stable-diffusion-xl" in sheet "sdxl-2024"`,
		`job "none": samples must be at least 1, not 0`,
	}
	if len(lines) != len(wantPrefixes) {
		t.Fatalf("Estimate error has %d lines, want %d:\n%v", len(lines), len(wantPrefixes), err)
	}
	for i, w := range wantPrefixes {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("error line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
	// What could be priced still is.
	if b.Jobs[0] != 1_800_000 || b.Total != 1_800_000 || b.Jobs[1] != 0 {
		t.Errorf("Estimate breakdown = %v, want job ok = 1.8 and total 1.8", b)
	}
}

func service(id, name string, params ...manifest.Param) manifest.Job {
	return manifest.Job{ID: id, Service: name, Params: params, Samples: 1}
}

func model(m string) manifest.Param { return manifest.Param{Name: "model", Value: m} }

// Stable Image jobs cost their service's flat price once; v1 jobs in the
// same manifest keep their per-image price.
func TestEstimateServices(t *testing.T) {
	s := mustSheet(t, DefaultSheet)
	ratio := manifest.Param{Name: "aspect_ratio", Value: "16:9"}
	jobs := []manifest.Job{
		service("core", "generate/core", ratio),                                 // 3
		service("ultra", "generate/ultra"),                                      // 8
		service("large", "generate/sd3", ratio, model("sd3.5-large")),           // 6.5
		service("flash", "generate/sd3", model("sd3.5-flash")),                  // 2.5
		service("flash-2", "generate/sd3", model("sd3.5-flash")),                // 2.5
		job("xl", "stable-diffusion-xl-1024-v1-0", 1024, 1024, 40, 2),           // 2 × 1.2
		service("relight", "edit/replace-background-and-relight"),               // 8
		{ID: "many", Service: "generate/core", Samples: 4, Width: 1, Height: 1}, // still 3: one result
	}
	b, err := Estimate(jobs, s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"3.0", "8.0", "6.5", "2.5", "2.5", "2.4", "8.0", "3.0"}
	for i, w := range want {
		if b.Jobs[i].String() != w {
			t.Errorf("Estimate: job %s = %v, want %s", jobs[i].ID, b.Jobs[i], w)
		}
	}
	if b.Total.String() != "35.9" {
		t.Errorf("Estimate: total = %v, want 35.9", b.Total)
	}
}

func TestEstimateServiceProblems(t *testing.T) {
	jobs := []manifest.Job{
		service("core-1", "generate/core"),
		service("core-2", "generate/core"),
		service("old-sd3", "generate/sd3", model("sd3-large")),
		service("no-model", "generate/sd3"),
		job("v1", "stable-diffusion-v1-5", 512, 512, 50, 1),
	}
	tests := []struct {
		sheet string
		want  []string
	}{
		{"dreamstudio-2022", []string{
			`job "core-1" (and 1 more): generate/core has no price in dreamstudio-2022 (2022-08-01 to 2022-11-30); price it with --pricing stability-2025-08`,
			`job "old-sd3": generate/sd3 with model sd3-large has no price in dreamstudio-2022 (2022-08-01 to 2022-11-30); no embedded price sheet prices it`,
			`job "no-model": generate/sd3 has no price in dreamstudio-2022 (2022-08-01 to 2022-11-30); no embedded price sheet prices it`,
		}},
		{"stability-2025-08", []string{
			`job "old-sd3": generate/sd3 with model sd3-large has no price in stability-2025-08 (from 2025-08-01), which prices it for model sd3.5-large, sd3.5-large-turbo, sd3.5-medium, sd3.5-flash; no embedded price sheet prices it`,
			`job "no-model": generate/sd3 without a model has no price in stability-2025-08 (from 2025-08-01), which prices it for model sd3.5-large, sd3.5-large-turbo, sd3.5-medium, sd3.5-flash; no embedded price sheet prices it`,
			`job "v1": stable-diffusion-v1-5 was retired 2023-11-15; price it with --pricing v1-2023 (also priced by dreamstudio-2022)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.sheet, func(t *testing.T) {
			b, err := Estimate(jobs, mustSheet(t, tt.sheet))
			if !errors.Is(err, ErrNoPrice) {
				t.Fatalf("Estimate error = %v, want ErrNoPrice", err)
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("Estimate error =\n%s\nwant\n%s", err, strings.Join(tt.want, "\n"))
			}
			var priced Credits
			for _, c := range b.Jobs {
				priced += c
			}
			if priced != b.Total {
				t.Errorf("Estimate: jobs sum to %v, total %v", priced, b.Total)
			}
		})
	}
}

// A matrix over a retired engine is one problem, whatever its sizes and
// steps.
func TestEstimateRetiredMatrix(t *testing.T) {
	var jobs []manifest.Job
	for i, size := range [][2]int{{512, 512}, {512, 768}, {768, 768}, {1024, 1024}} {
		for steps := 10; steps <= 150; steps += 35 {
			jobs = append(jobs, job(fmt.Sprint("m", i, "-", steps), "stable-diffusion-v1-5", size[0], size[1], steps, 1))
		}
	}
	_, err := Estimate(jobs, mustSheet(t, DefaultSheet))
	want := fmt.Sprintf(`job "m0-10" (and %d more): stable-diffusion-v1-5 was retired 2023-11-15; price it with --pricing v1-2023 (also priced by dreamstudio-2022)`, len(jobs)-1)
	if !errors.Is(err, ErrRetired) || err.Error() != want {
		t.Errorf("Estimate error = %v, want %s", err, want)
	}
}

// TestEstimatorOneAtATime prices jobs one at a time at the positions a
// caller gives (a shard's, say): the prices are Estimate's, and each
// problem names the position of the first job it hit.
func TestEstimatorOneAtATime(t *testing.T) {
	s := mustSheet(t, "sdxl-2024")
	jobs := []manifest.Job{
		job("ok", "stable-diffusion-xl-1024-v1-0", 1024, 1024, 30, 2),
		job("old-1", "stable-diffusion-v1-5", 512, 512, 50, 1),
		job("ok-2", "stable-diffusion-xl-1024-v1-0", 1024, 1024, 30, 1),
		job("old-2", "stable-diffusion-v1-5", 512, 512, 50, 1),
		job("ok-3", "stable-diffusion-xl-1024-v1-0", 1024, 1024, 40, 1),
		job("none", "stable-diffusion-xl-1024-v1-0", 1024, 1024, 30, 0),
	}
	want, wantErr := Estimate(jobs, s)
	e := NewEstimator(s)
	var got []Credits
	for i := range jobs {
		got = append(got, e.Price(100+3*i, &jobs[i]))
	}
	if !slices.Equal(got, want.Jobs) || e.Total() != want.Total {
		t.Errorf("Price one at a time = %v (total %v), want %v (total %v)", got, e.Total(), want.Jobs, want.Total)
	}
	if e.Err() == nil || wantErr == nil || e.Err().Error() != wantErr.Error() {
		t.Errorf("Err() = %v, want %v", e.Err(), wantErr)
	}
	var positions []int
	for _, err := range e.Err().(interface{ Unwrap() []error }).Unwrap() {
		var je *JobError
		if !errors.As(err, &je) {
			t.Fatalf("problem %v is not a *JobError", err)
		}
		positions = append(positions, je.Index)
	}
	if want := []int{103, 115}; !slices.Equal(positions, want) {
		t.Errorf("problems at positions %v, want %v", positions, want)
	}
}

func TestEstimateEmpty(t *testing.T) {
	b, err := Estimate(nil, mustSheet(t, DefaultSheet))
	if err != nil || b.Total != 0 || len(b.Jobs) != 0 {
		t.Fatalf("Estimate(nil) = %v, %v, want zero", b, err)
	}
}

func TestCheckBudget(t *testing.T) {
	tests := []struct {
		total, budget string
		over          bool
	}{
		{"24.6", "24.6", false},
		{"24.600001", "24.6", true},
		{"24.599999", "24.6", false},
		{"0", "0", false},
		{"0.000001", "0", true},
	}
	for _, tt := range tests {
		total, _ := ParseCredits(tt.total)
		budget, _ := ParseCredits(tt.budget)
		err := CheckBudget(total, budget)
		if got := errors.Is(err, ErrOverBudget); got != tt.over {
			t.Errorf("CheckBudget(%s, %s) = %v, want over budget %v", tt.total, tt.budget, err, tt.over)
		}
	}
	err := CheckBudget(25*Credit, 12_500_000)
	if want := "over budget: estimate 25.0 credits exceeds budget 12.5 credits"; err == nil || err.Error() != want {
		t.Errorf("CheckBudget error = %v, want %q", err, want)
	}
}

// BenchmarkEstimateMillion prices a million jobs over a few distinct sizes
// and step counts, as a large matrix manifest would produce.
func BenchmarkEstimateMillion(b *testing.B) {
	s := mustSheet(b, "dreamstudio-2022")
	sizes := [][2]int{{512, 512}, {512, 768}, {768, 768}, {1024, 1024}, {640, 640}}
	jobs := make([]manifest.Job, 1_000_000)
	for i := range jobs {
		sz := sizes[i%len(sizes)]
		jobs[i] = job(fmt.Sprint("j", i), "stable-diffusion-v1-5", sz[0], sz[1], 10+i%7*20, 1+i%4)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Estimate(jobs, s); err != nil {
			b.Fatal(err)
		}
	}
}
