package report

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
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
// is what `batch diff --format json` prints. It holds no job of either
// plan: for each base job, a fingerprint of what Diff compares, its credits
// and where to read it again; the jobs that differ are summed by group as
// the plans pass, and Each lists them in a further pass.
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
	// Differing is how many jobs were added, removed or changed; the JSON
	// lists them last, as "jobs" (see Each).
	Differing int `json:"-"`

	base, head *Plan
	ids        *idHasher
	seed       maphash.Seed
	index      map[idKey]baseJob // base's jobs by id
	pass       uint32            // passes Each has made
	groups     []*diffGroup      // the differing jobs by group, in order of first mention
	rows       []DiffJob         // the differing jobs when there are at most MaxJobRows; nil otherwise
}

// baseJob is what a diff keeps of a base job.
type baseJob struct {
	fp      uint64 // fingerprint of what changes compares but credits
	credits cost.Credits
	pos     int64  // where base.Jobs reads it again
	pass    uint32 // the last pass of Each that met it in head
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
// order included) differ. It reads base twice and head once, keeping about
// 50 bytes per base job, and counts and sums the jobs that differ by group
// (reading again the base jobs of the first MaxJobRows changed, to say what
// changed); the result's Each lists them.
func Diff(base, head *Plan) (*DiffResult, error) {
	d := &DiffResult{
		Base: base.Manifest, Head: head.Manifest, Name: head.Name,
		BasePricing: base.Pricing, HeadPricing: head.Pricing,
		BaseTotalCredits: base.TotalCredits, HeadTotalCredits: head.TotalCredits,
		TotalDeltaCredits: head.TotalCredits - base.TotalCredits,
		HeadBudget:        head.Budget, HeadOverBudget: head.OverBudget,
		base: base, head: head, ids: newIDHasher(), seed: maphash.MakeSeed(),
		index: make(map[idKey]baseJob), rows: []DiffJob{},
	}
	err := eachJob(base, func(pos int64, b *PlanJob) error {
		d.index[d.ids.key(b.ID)] = baseJob{fp: d.fingerprint(b), credits: b.Credits, pos: pos}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("diff: base %s: %w", base.Manifest, err)
	}
	byName := make(map[string]*diffGroup)
	// What changed is worded only for the jobs the tables may list: the
	// rest would cost reading their base jobs again for nothing.
	listed := func() bool { return d.Differing < MaxJobRows }
	err = d.walk(listed, func(j *DiffJob) error {
		d.Differing++
		switch {
		case d.Differing <= MaxJobRows:
			d.rows = append(d.rows, *j)
		case d.rows != nil:
			d.rows = nil
		}
		g := byName[j.Group]
		if g == nil {
			g = &diffGroup{Name: j.Group}
			byName[j.Group] = g
			d.groups = append(d.groups, g)
		}
		switch j.Change {
		case ChangeAdded:
			g.Added++
		case ChangeRemoved:
			g.Removed++
		default:
			g.Changed++
		}
		g.Base += j.BaseCredits
		g.Head += j.HeadCredits
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Each calls fn with every job that differs, in the order the JSON lists
// them: head order first (added and changed), then removed jobs in base
// order. It reads head once and base once, and again each changed job;
// fn must not keep j.
func (d *DiffResult) Each(fn func(j *DiffJob) error) error {
	return d.walk(func() bool { return true }, fn)
}

// walk is Each, but it says what changed in a changed job (its Detail)
// only when detail says so; else Detail is "" and the base job is not read
// again.
func (d *DiffResult) walk(detail func() bool, fn func(j *DiffJob) error) error {
	d.pass++
	var b PlanJob
	err := eachJob(d.head, func(_ int64, h *PlanJob) error {
		k := d.ids.key(h.ID)
		e, ok := d.index[k]
		if !ok {
			return fn(&DiffJob{ID: h.ID, Group: h.Group, Change: ChangeAdded,
				HeadCredits: h.Credits, DeltaCredits: h.Credits, Detail: describe(*h)})
		}
		e.pass = d.pass
		d.index[k] = e
		// Jobs whose fingerprints differ differ (changes says how), and so
		// do jobs of different credits.
		if e.fp == d.fingerprint(h) && e.credits == h.Credits {
			return nil
		}
		j := DiffJob{ID: h.ID, Group: h.Group, Change: ChangeChanged,
			BaseCredits: e.credits, HeadCredits: h.Credits, DeltaCredits: h.Credits - e.credits}
		if detail() {
			if err := d.base.Jobs.At(e.pos, &b); err != nil {
				return fmt.Errorf("base %s: %w", d.Base, err)
			}
			j.Detail = changes(b, *h)
		}
		return fn(&j)
	})
	if err != nil {
		return fmt.Errorf("diff: head %s: %w", d.Head, err)
	}
	err = eachJob(d.base, func(_ int64, b *PlanJob) error {
		if d.index[d.ids.key(b.ID)].pass == d.pass {
			return nil
		}
		return fn(&DiffJob{ID: b.ID, Group: b.Group, Change: ChangeRemoved,
			BaseCredits: b.Credits, DeltaCredits: -b.Credits, Detail: describe(*b)})
	})
	if err != nil {
		return fmt.Errorf("diff: base %s: %w", d.Base, err)
	}
	return nil
}

// fingerprint hashes what changes compares of j, credits aside: two jobs
// whose fingerprints differ have a change; two whose fingerprints agree
// have none but with a chance of 2⁻⁶⁴.
func (d *DiffResult) fingerprint(j *PlanJob) uint64 {
	var h maphash.Hash
	h.SetSeed(d.seed)
	str := func(s string) {
		num(&h, len(s))
		h.WriteString(s)
	}
	str(j.op())
	num(&h, j.Width)
	num(&h, j.Height)
	num(&h, j.Steps)
	str(j.AspectRatio)
	str(j.OutputFormat)
	num(&h, j.Samples)
	num(&h, len(j.DependsOn))
	for _, id := range j.DependsOn {
		str(id)
	}
	return h.Sum64()
}

// num writes n to h as 8 bytes.
func num(h *maphash.Hash, n int) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}

// Unchanged reports whether the plans cost the same and no job differs.
func (d *DiffResult) Unchanged() bool {
	return d.Differing == 0 && d.TotalDeltaCredits == 0
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
