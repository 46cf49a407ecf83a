package cost

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Credits is an amount of Stability API credit in millionths of a credit
// (micro-credits), so that sums are exact. One credit is one US cent; the
// zero value is no credit at all.
type Credits int64

// Common amounts.
const (
	Micro  Credits = 1                 // one millionth of a credit
	Credit Credits = 1_000_000 * Micro // one credit, $0.01
)

// String formats c in credits with as many decimals as it needs (at least
// one), e.g. "2.4", "0.200053", "1500.0".
func (c Credits) String() string {
	neg, m := c.abs()
	s := strconv.FormatUint(m/uint64(Credit), 10)
	if frac := m % uint64(Credit); frac == 0 {
		s += ".0"
	} else {
		s += "." + strings.TrimRight(fmt.Sprintf("%06d", frac), "0")
	}
	if neg {
		return "-" + s
	}
	return s
}

// abs returns c's sign and magnitude; as a uint64 the magnitude of the most
// negative Credits fits, and rounding it up cannot overflow.
func (c Credits) abs() (neg bool, m uint64) {
	if c < 0 {
		return true, -uint64(c)
	}
	return false, uint64(c)
}

// Fixed formats c rounded half away from zero to the given number of
// decimals (0–6), e.g. Fixed(1) of 0.25 credits is "0.3".
func (c Credits) Fixed(decimals int) string {
	decimals = min(max(decimals, 0), 6)
	unit := uint64(1)
	for range 6 - decimals {
		unit *= 10
	}
	neg, m := c.abs()
	r := (m + unit/2) / unit * unit
	s := strconv.FormatUint(r/uint64(Credit), 10)
	if decimals > 0 {
		s += "." + fmt.Sprintf("%06d", r%uint64(Credit))[:decimals]
	}
	if neg && r != 0 {
		return "-" + s
	}
	return s
}

// USD formats c exactly as US dollars with at least two decimals, e.g.
// "$0.024" for 2.4 credits and "$15.00" for 1500. One credit is $0.01.
func (c Credits) USD() string {
	neg, m := c.abs()
	const microPerDollar = uint64(100 * Credit)
	frac := strings.TrimRight(fmt.Sprintf("%08d", m%microPerDollar), "0")
	for len(frac) < 2 {
		frac += "0"
	}
	sign := ""
	if neg {
		sign = "-"
	}
	return fmt.Sprintf("%s$%d.%s", sign, m/microPerDollar, frac)
}

// MarshalJSON writes c as a JSON number in credits, exactly (e.g. 2.4).
func (c Credits) MarshalJSON() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalJSON reads a JSON number in credits with at most six decimals.
// A JSON null leaves c unchanged, as encoding/json does for numbers.
func (c *Credits) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := ParseCredits(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// ErrSyntax reports text that is not a decimal amount of credits.
var ErrSyntax = errors.New("not a decimal number of credits with at most 6 decimals")

// ParseCredits reads a decimal amount of credits such as "120", "2.4" or
// "0.000001". It accepts at most six decimals and no exponent, so the result
// is exact.
func ParseCredits(s string) (Credits, error) {
	t := strings.TrimSpace(s)
	neg := strings.HasPrefix(t, "-")
	if neg || strings.HasPrefix(t, "+") {
		t = t[1:] // one sign at most: "-+5" is not a number
	}
	whole, frac, hasDot := strings.Cut(t, ".")
	if whole == "" && (!hasDot || frac == "") || len(frac) > 6 || !digits(whole) || !digits(frac) {
		return 0, fmt.Errorf("%q: %w", s, ErrSyntax)
	}
	var w int64
	if whole != "" {
		var err error
		if w, err = strconv.ParseInt(whole, 10, 64); err != nil || w > int64(maxCredits/Credit) {
			return 0, fmt.Errorf("%q: too large", s)
		}
	}
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	if w == int64(maxCredits/Credit) && Credits(f) > maxCredits%Credit {
		return 0, fmt.Errorf("%q: too large", s)
	}
	c := Credits(w)*Credit + Credits(f)
	if neg {
		c = -c
	}
	return c, nil
}

const maxCredits = Credits(1<<63 - 1)

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
