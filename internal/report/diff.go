package report

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/cost"
)

// Kinds of change in a diff.
const (
	ChangeAdded   = "added"
	ChangeRemoved = "removed"
	ChangeChanged = "changed"
)

// DiffResult is the cost difference between a base and a head plan; its JSON
// is what `batch diff --format json` prints.
type DiffResult struct {
	Base              string       `json:"base"`                // base plan's manifest path
	Head              string       `json:"head"`                // head plan's manifest path
	Name              string       `json:"name,omitempty"`      // head manifest's name
	BasePricing       string       `json:"base_pricing"`        // price sheet ids
	HeadPricing       string       `json:"head_pricing"`        //
	BaseTotalCredits  cost.Credits `json:"base_total_credits"`  //
	HeadTotalCredits  cost.Credits `json:"head_total_credits"`  //
	TotalDeltaCredits cost.Credits `json:"total_delta_credits"` // head − base; negative when cheaper
	// HeadBudget is the head plan's budget; nil when it has none.
	HeadBudget     *cost.Credits `json:"head_budget"`
	HeadOverBudget bool          `json:"head_over_budget"`
	// Jobs are the jobs added, removed or changed: head order first (added
	// and changed), then removed jobs in base order. Empty, not nil, when
	// nothing changed.
	Jobs []DiffJob `json:"jobs"`
}

// DiffJob is one job that differs between base and head.
type DiffJob struct {
	ID           string       `json:"id"`
	Group        string       `json:"group"`
	Change       string       `json:"change"`        // added, removed or changed
	BaseCredits  cost.Credits `json:"base_credits"`  // zero when added
	HeadCredits  cost.Credits `json:"head_credits"`  // zero when removed
	DeltaCredits cost.Credits `json:"delta_credits"` // head − base
	// Detail says what changed, e.g. "steps 30 → 50" or "depends_on teapot
	// → teapot-cutout", or describes an added or removed job, e.g.
	// "sdxl-1.0 1024x1024, 30 steps, 2 samples" or "upscale/fast 4096x4096,
	// from teapot-cutout".
	Detail string `json:"detail"`
}

// Diff compares two plans job by job (matched by id). A job is changed when
// its engine or service and model, size, steps, aspect ratio, output
// format, samples, credits or the jobs it takes images from (depends_on,
// order included) differ.
func Diff(base, head *Plan) *DiffResult {
	d := &DiffResult{
		Base: base.Manifest, Head: head.Manifest, Name: head.Name,
		BasePricing: base.Pricing, HeadPricing: head.Pricing,
		BaseTotalCredits: base.TotalCredits, HeadTotalCredits: head.TotalCredits,
		TotalDeltaCredits: head.TotalCredits - base.TotalCredits,
		HeadBudget:        head.Budget, HeadOverBudget: head.OverBudget,
		Jobs: []DiffJob{},
	}
	inBase := make(map[string]PlanJob, len(base.Jobs))
	for _, j := range base.Jobs {
		inBase[j.ID] = j
	}
	inHead := make(map[string]bool, len(head.Jobs))
	for _, h := range head.Jobs {
		inHead[h.ID] = true
		b, ok := inBase[h.ID]
		if !ok {
			d.Jobs = append(d.Jobs, DiffJob{ID: h.ID, Group: h.Group, Change: ChangeAdded,
				HeadCredits: h.Credits, DeltaCredits: h.Credits, Detail: describe(h)})
			continue
		}
		if detail := changes(b, h); detail != "" {
			d.Jobs = append(d.Jobs, DiffJob{ID: h.ID, Group: h.Group, Change: ChangeChanged,
				BaseCredits: b.Credits, HeadCredits: h.Credits, DeltaCredits: h.Credits - b.Credits, Detail: detail})
		}
	}
	for _, b := range base.Jobs {
		if !inHead[b.ID] {
			d.Jobs = append(d.Jobs, DiffJob{ID: b.ID, Group: b.Group, Change: ChangeRemoved,
				BaseCredits: b.Credits, DeltaCredits: -b.Credits, Detail: describe(b)})
		}
	}
	return d
}

// Unchanged reports whether the plans cost the same and no job differs.
func (d *DiffResult) Unchanged() bool {
	return len(d.Jobs) == 0 && d.TotalDeltaCredits == 0
}

// describe is a one-line summary of a job's priced settings.
func describe(j PlanJob) string {
	s := j.op() + " " + sizeText(j.Width, j.Height, j.AspectRatio)
	if j.Steps > 0 {
		s += fmt.Sprintf(", %d steps", j.Steps)
	}
	if j.OutputFormat != "" {
		s += ", " + j.OutputFormat
	}
	if j.Samples != 1 {
		s += fmt.Sprintf(", %d samples", j.Samples)
	}
	if len(j.DependsOn) > 0 {
		s += ", from " + fromText(j.DependsOn)
	}
	return s
}

// changes lists what differs between b and h, or "" when nothing does.
func changes(b, h PlanJob) string {
	var out []string
	if bo, ho := b.op(), h.op(); bo != ho {
		what := "engine"
		if b.Service != "" || h.Service != "" {
			what = "engine / service"
			if b.Engine == "" && h.Engine == "" {
				what = "service"
			}
		}
		out = append(out, what+" "+bo+" → "+ho)
	}
	if b.Width != h.Width || b.Height != h.Height {
		out = append(out, fmt.Sprintf("size %dx%d → %dx%d", b.Width, b.Height, h.Width, h.Height))
	}
	if b.Steps != h.Steps {
		out = append(out, "steps "+stepsText(b.Steps)+" → "+stepsText(h.Steps))
	}
	if b.AspectRatio != h.AspectRatio {
		out = append(out, "aspect_ratio "+orDash(b.AspectRatio)+" → "+orDash(h.AspectRatio))
	}
	if b.OutputFormat != h.OutputFormat {
		out = append(out, "output_format "+orDash(b.OutputFormat)+" → "+orDash(h.OutputFormat))
	}
	if b.Samples != h.Samples {
		out = append(out, fmt.Sprintf("samples %d → %d", b.Samples, h.Samples))
	}
	if !slices.Equal(b.DependsOn, h.DependsOn) {
		out = append(out, "depends_on "+fromText(b.DependsOn)+" → "+fromText(h.DependsOn))
	}
	if len(out) == 0 && b.Credits != h.Credits {
		out = append(out, "price "+b.Credits.String()+" → "+h.Credits.String())
	}
	return strings.Join(out, ", ")
}

// orDash is s, or "—" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// ErrThreshold is wrapped by the error Check returns when a diff crosses a
// threshold; the CLI exits 3 on it.
var ErrThreshold = errors.New("cost diff crossed its threshold")

// Check returns an error wrapping ErrThreshold when the total increase is
// more than maxIncrease credits, or more than maxPercent percent of the base
// total (any increase from a zero base crosses a percentage). A nil limit is
// not checked; a decrease never crosses either.
func (d *DiffResult) Check(maxIncrease *cost.Credits, maxPercent *float64) error {
	delta := d.TotalDeltaCredits
	if delta <= 0 {
		return nil
	}
	var errs []error
	if maxIncrease != nil && delta > *maxIncrease {
		errs = append(errs, fmt.Errorf("%w: total cost rises by %s credits, more than the %s allowed",
			ErrThreshold, delta, *maxIncrease))
	}
	if maxPercent != nil && exceedsPercent(delta, d.BaseTotalCredits, *maxPercent) {
		rise := percentText(delta, d.BaseTotalCredits)
		if rise == "" {
			rise = delta.String() + " credits from a zero base"
		}
		errs = append(errs, fmt.Errorf("%w: total cost rises by %s, more than the %s%% allowed",
			ErrThreshold, rise, strconv.FormatFloat(*maxPercent, 'f', -1, 64)))
	}
	return errors.Join(errs...)
}

// exceedsPercent reports whether delta > pct% of base, exactly: pct is
// compared as the binary value it holds, with no float rounding of the
// product.
func exceedsPercent(delta, base cost.Credits, pct float64) bool {
	if base <= 0 {
		return true
	}
	limit := new(big.Rat).Mul(new(big.Rat).SetInt64(int64(base)), new(big.Rat).SetFloat64(pct))
	got := new(big.Rat).SetInt64(int64(delta) * 100)
	return got.Cmp(limit) > 0
}

// percentText formats delta as a signed percentage of base with one decimal,
// e.g. "+12.5%", or "" when base is zero.
func percentText(delta, base cost.Credits) string {
	if base == 0 {
		return ""
	}
	// Tenths of a percent, rounded half away from zero, in integers.
	tenths := new(big.Rat).SetFrac64(int64(delta)*1000, int64(base))
	f, _ := tenths.Float64()
	n := int64(f + 0.5)
	if f < 0 {
		n = int64(f - 0.5)
	}
	sign := "+"
	if n < 0 {
		sign, n = "-", -n
	}
	return fmt.Sprintf("%s%d.%d%%", sign, n/10, n%10)
}

// signed formats c with an explicit sign: "+1.6", "-0.4", "0.0".
func signed(c cost.Credits) string {
	if c > 0 {
		return "+" + c.String()
	}
	return c.String()
}

// signedUSD formats c in dollars with an explicit sign: "+$0.016".
func signedUSD(c cost.Credits) string {
	if c > 0 {
		return "+" + c.USD()
	}
	return c.USD()
}
