package report

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
)

func planOf(jobs ...PlanJob) *Plan {
	p := &Plan{Manifest: "m.yaml", Pricing: "dreamstudio-2022", Jobs: PlanRows(jobs)}
	for _, j := range jobs {
		p.TotalCredits += j.Credits
	}
	return p
}

func pj(id string, steps int, c string) PlanJob {
	return PlanJob{ID: id, Group: strings.Split(id, "-")[0], Engine: "e", Width: 512, Height: 512, Steps: steps, Samples: 1, Credits: credits(c)}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name       string
		base, head *Plan
		want       []string // "id change delta"
		wantTotal  string
	}{
		{"identical", planOf(pj("a", 30, "1.5")), planOf(pj("a", 30, "1.5")), nil, "0.0"},
		{"both empty", planOf(), planOf(), nil, "0.0"},
		{"added", planOf(pj("a", 30, "1.5")), planOf(pj("a", 30, "1.5"), pj("b", 30, "2")), []string{"b added +2.0"}, "2.0"},
		{"removed", planOf(pj("a", 30, "1.5"), pj("b", 30, "2")), planOf(pj("b", 30, "2")), []string{"a removed -1.5"}, "-1.5"},
		{"steps changed", planOf(pj("a", 30, "1.5")), planOf(pj("a", 50, "2.5")), []string{"a changed +1.0"}, "1.0"},
		{"changed at the same price", planOf(pj("a", 30, "1.5")), planOf(pj("a", 31, "1.5")), []string{"a changed 0.0"}, "0.0"},
		{"price only", planOf(pj("a", 30, "1.5")), planOf(pj("a", 30, "1.2")), []string{"a changed -0.3"}, "-0.3"},
		{"renamed", planOf(pj("a", 30, "1.5")), planOf(pj("b", 30, "1.5")), []string{"b added +1.5", "a removed -1.5"}, "0.0"},
		{"head order then removed", planOf(pj("x", 1, "1"), pj("y", 1, "1"), pj("z", 1, "1")),
			planOf(pj("z", 2, "2"), pj("w", 1, "1"), pj("y", 1, "1")),
			[]string{"z changed +1.0", "w added +1.0", "x removed -1.0"}, "1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustDiff(t, tt.base, tt.head)
			jobs := diffJobs(t, d)
			var got []string
			for _, j := range jobs {
				got = append(got, fmt.Sprintf("%s %s %s", j.ID, j.Change, signed(j.DeltaCredits)))
			}
			if strings.Join(got, "; ") != strings.Join(tt.want, "; ") {
				t.Errorf("Diff jobs = %q, want %q", got, tt.want)
			}
			if d.TotalDeltaCredits.String() != tt.wantTotal {
				t.Errorf("Diff total delta = %s, want %s", d.TotalDeltaCredits, tt.wantTotal)
			}
			var sum cost.Credits
			for _, j := range jobs {
				sum += j.DeltaCredits
			}
			if sum != d.TotalDeltaCredits {
				t.Errorf("job deltas sum to %s, total delta is %s", sum, d.TotalDeltaCredits)
			}
			if d.Differing != len(jobs) {
				t.Errorf("Differing = %d, Each lists %d jobs", d.Differing, len(jobs))
			}
			var js strings.Builder
			if err := WriteDiff(&js, FormatJSON, d); err != nil {
				t.Fatal(err)
			}
			if empty := strings.Contains(js.String(), `"jobs": []`); empty != (len(jobs) == 0) {
				t.Errorf("JSON of %d jobs says %q", len(jobs), js.String())
			}
			if unchanged := len(tt.want) == 0; d.Unchanged() != unchanged {
				t.Errorf("Unchanged() = %v, want %v", d.Unchanged(), unchanged)
			}
		})
	}
}

func TestDiffMarkdownUnchanged(t *testing.T) {
	var b strings.Builder
	if err := WriteDiff(&b, FormatMarkdown, mustDiff(t, planOf(pj("a", 30, "1.5")), planOf(pj("a", 30, "1.5")))); err != nil {
		t.Fatal(err)
	}
	if b.String() != "no cost change\n" {
		t.Errorf("markdown of an unchanged diff = %q, want %q", b.String(), "no cost change\n")
	}
}

func TestCheck(t *testing.T) {
	ptr := func(s string) *cost.Credits { c := credits(s); return &c }
	pct := func(f float64) *float64 { return &f }
	tests := []struct {
		name        string
		base, head  string
		above       *cost.Credits
		percent     *float64
		wantCrossed bool
	}{
		{"no limits", "10", "100", nil, nil, false},
		{"above: under", "10", "12", ptr("2.5"), nil, false},
		{"above: equal is not more", "10", "12.5", ptr("2.5"), nil, false},
		{"above: one micro-credit more", "10", "12.500001", ptr("2.5"), nil, true},
		{"above: zero limit, any rise", "10", "10.000001", ptr("0"), nil, true},
		{"above: decrease", "10", "1", ptr("0"), nil, false},
		{"percent: under", "200", "219", nil, pct(10), false},
		{"percent: exactly 10%", "200", "220", nil, pct(10), false},
		{"percent: over 10%", "200", "220.000001", nil, pct(10), true},
		{"percent: fractional", "3", "3.1", nil, pct(3.3), true}, // 3.33…% > 3.3%
		{"percent: fractional under", "3", "3.1", nil, pct(3.34), false},
		{"percent: zero base, any rise", "0", "0.1", nil, pct(1000), true},
		{"percent: zero base, no rise", "0", "0", nil, pct(0), false},
		{"percent: zero limit", "10", "10.1", nil, pct(0), true},
		{"percent: decrease", "10", "5", nil, pct(0), false},
		{"both: only percent crosses", "100", "120", ptr("50"), pct(10), true},
		{"both: neither", "100", "105", ptr("50"), pct(10), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustDiff(t, planOf(pj("a", 1, tt.base)), planOf(pj("a", 1, tt.head)))
			err := d.Check(tt.above, tt.percent)
			if crossed := errors.Is(err, ErrThreshold); crossed != tt.wantCrossed {
				t.Errorf("Check(%v, %v) on %s → %s = %v, want crossed %v", tt.above, tt.percent, tt.base, tt.head, err, tt.wantCrossed)
			}
			if err != nil && !errors.Is(err, ErrThreshold) {
				t.Errorf("Check error %v does not wrap ErrThreshold", err)
			}
		})
	}
}

func TestCheckMessage(t *testing.T) {
	d := mustDiff(t, planOf(pj("a", 1, "0")), planOf(pj("a", 1, "4.8")))
	limit := credits("2")
	pct := 5.0
	err := d.Check(&limit, &pct)
	for _, want := range []string{"rises by 4.8 credits, more than the 2.0 allowed", "4.8 credits from a zero base, more than the 5% allowed"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check error = %v, want it to say %q", err, want)
		}
	}
}

func TestPercentText(t *testing.T) {
	tests := []struct {
		delta, base, want string
	}{
		{"1", "8", "+12.5%"},
		{"-1", "8", "-12.5%"},
		{"1", "3", "+33.3%"},
		{"2", "3", "+66.7%"},
		{"0.000001", "3", "+0.0%"},
		{"5", "0", ""},
	}
	for _, tt := range tests {
		if got := percentText(credits(tt.delta), credits(tt.base)); got != tt.want {
			t.Errorf("percentText(%s, %s) = %q, want %q", tt.delta, tt.base, got, tt.want)
		}
	}
}

func ExampleWriteDiff() {
	base := &Plan{Manifest: "shots.yaml", Jobs: PlanRows{
		{ID: "mug", Group: "mug", Engine: "stable-diffusion-v1-6", Width: 512, Height: 512, Steps: 30, Samples: 1, Credits: 600_000},
	}, TotalCredits: 600_000}
	head := &Plan{Manifest: "shots.yaml", Jobs: PlanRows{
		{ID: "mug", Group: "mug", Engine: "stable-diffusion-v1-6", Width: 512, Height: 512, Steps: 50, Samples: 1, Credits: 1_000_000},
	}, TotalCredits: 1_000_000}
	d, _ := Diff(base, head)
	_ = WriteDiff(os.Stdout, FormatMarkdown, d)
	// Output:
	// ### Cost diff: `shots.yaml`
	//
	// **+0.4 credits (+$0.004, +66.7%)**: 0.6 → 1.0 credits
	//
	// | Job | Change | Base | Head | Δ credits | Detail |
	// |---|---|--:|--:|--:|---|
	// | mug | changed | 0.6 | 1.0 | +0.4 | steps 30 → 50 |
}
