package cost

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
)

// decimal is an exact number read from a price sheet, kept with the text it
// was written as so that descriptions quote the source's own constants.
type decimal struct {
	text string
	rat  *big.Rat // never nil once parsed; read-only
}

// decimalSyntax accepts plain decimals with an optional exponent, such as
// "0.9", "-1", ".5" or "2.16e-6"; big.Rat alone would also take fractions and
// hexadecimal.
var decimalSyntax = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE]([+-]?[0-9]{1,3}))?$`)

// parseDecimal reads s exactly. Exponents are limited to three digits so a
// hostile file cannot make big.Rat allocate without bound.
func parseDecimal(s string) (decimal, error) {
	if !decimalSyntax.MatchString(s) {
		return decimal{}, fmt.Errorf("%q is not a decimal number", s)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return decimal{}, fmt.Errorf("%q is not a decimal number", s)
	}
	return decimal{text: s, rat: r}, nil
}

func (d decimal) String() string { return d.text }

// ratInt returns n as a big.Rat.
func ratInt(n int64) *big.Rat { return new(big.Rat).SetInt64(n) }

var microPerCredit = big.NewInt(int64(Credit))

// microCredits converts a non-negative amount of credits to Credits, rounding
// to a multiple of step micro-credits (step ≥ 1) as mode says.
func microCredits(credits *big.Rat, step int64, mode roundMode) (Credits, error) {
	if credits.Sign() < 0 {
		return 0, fmt.Errorf("price %s credits is negative", credits.FloatString(6))
	}
	// n = credits × 10⁶ / step, then rounded to an integer number of steps.
	num := new(big.Int).Mul(credits.Num(), microPerCredit)
	den := new(big.Int).Mul(credits.Denom(), big.NewInt(step))
	switch mode {
	case roundHalfUp: // ⌊n + ½⌋ = ⌊(2·num + den) / (2·den)⌋
		num.Lsh(num, 1).Add(num, den)
		den.Lsh(den, 1)
	default: // ⌈n⌉ = ⌊(num + den − 1) / den⌋
		num.Add(num, den).Sub(num, big.NewInt(1))
	}
	n := num.Quo(num, den)
	if !n.IsInt64() || n.Int64() > int64(maxCredits)/step {
		return 0, fmt.Errorf("price %s credits is too large", credits.FloatString(0))
	}
	return Credits(n.Int64() * step), nil
}

// roundMode says how a rule rounds each image's price.
type roundMode int

const (
	roundUp     roundMode = iota // towards +∞, Stability's practice for fractional prices
	roundHalfUp                  // to nearest, halves up, as the 2022 table did
)

func (m roundMode) String() string {
	if m == roundHalfUp {
		return "half_up"
	}
	return "up"
}

// itoa is strconv.Itoa for int64.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }
