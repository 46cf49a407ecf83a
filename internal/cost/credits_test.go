package cost

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestCreditsStringRoundTrip(t *testing.T) {
	tests := []struct {
		c    Credits
		want string
	}{
		{0, "0.0"},
		{Micro, "0.000001"},
		{200053, "0.200053"},
		{2_400_000, "2.4"},
		{1500 * Credit, "1500.0"},
		{-2_400_000, "-2.4"},
		{maxCredits, "9223372036854.775807"},
		{-maxCredits, "-9223372036854.775807"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.c.String(); got != tt.want {
				t.Fatalf("Credits(%d).String() = %q, want %q", int64(tt.c), got, tt.want)
			}
			back, err := ParseCredits(tt.want)
			if err != nil || back != tt.c {
				t.Fatalf("ParseCredits(%q) = %d, %v, want %d", tt.want, int64(back), err, int64(tt.c))
			}
			b, err := json.Marshal(tt.c)
			if err != nil || string(b) != tt.want {
				t.Fatalf("json.Marshal(%d) = %s, %v, want %s", int64(tt.c), b, err, tt.want)
			}
			var fromJSON Credits
			if err := json.Unmarshal(b, &fromJSON); err != nil || fromJSON != tt.c {
				t.Fatalf("json.Unmarshal(%s) = %d, %v, want %d", b, int64(fromJSON), err, int64(tt.c))
			}
		})
	}
}

func TestCreditsExtremes(t *testing.T) {
	tests := []struct{ got, want string }{
		{Credits(-1 << 63).String(), "-9223372036854.775808"},
		{Credits(-1 << 63).Fixed(0), "-9223372036855"},
		{Credits(-1 << 63).USD(), "-$92233720368.54775808"},
		{maxCredits.Fixed(1), "9223372036854.8"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseCredits(t *testing.T) {
	tests := []struct {
		in   string
		want Credits
	}{
		{"120", 120 * Credit},
		{" 12.5 ", 12_500_000},
		{".5", 500_000},
		{"5.", 5 * Credit},
		{"+1", Credit},
		{"-0.000001", -Micro},
		{"0.1", 100_000},
	}
	for _, tt := range tests {
		got, err := ParseCredits(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseCredits(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseCreditsErrors(t *testing.T) {
	for _, in := range []string{"", ".", "-", "abc", "1e3", "0.0000001", "1,5", "-+5", "--5", "1 2", "9223372036855", "9223372036854.775808"} {
		if got, err := ParseCredits(in); err == nil {
			t.Errorf("ParseCredits(%q) = %v, want an error", in, got)
		}
	}
	if _, err := ParseCredits("x"); !errors.Is(err, ErrSyntax) {
		t.Errorf("ParseCredits(x) error = %v, want ErrSyntax", err)
	}
}

func TestCreditsJSONNull(t *testing.T) {
	c := 7 * Credit
	if err := json.Unmarshal([]byte("null"), &c); err != nil || c != 7*Credit {
		t.Fatalf("json.Unmarshal(null) = %v, %v, want 7.0 unchanged", c, err)
	}
}

func TestCreditsFixedAndUSD(t *testing.T) {
	tests := []struct {
		c        Credits
		decimals int
		fixed    string
		usd      string
	}{
		{250_000, 1, "0.3", "$0.0025"},
		{200053, 4, "0.2001", "$0.00200053"},
		{-250_000, 1, "-0.3", "-$0.0025"},
		{-40_000, 1, "0.0", "-$0.0004"},
		{2_400_000, 0, "2", "$0.024"},
		{1500 * Credit, 2, "1500.00", "$15.00"},
	}
	for _, tt := range tests {
		if got := tt.c.Fixed(tt.decimals); got != tt.fixed {
			t.Errorf("Credits(%v).Fixed(%d) = %q, want %q", tt.c, tt.decimals, got, tt.fixed)
		}
		if got := tt.c.USD(); got != tt.usd {
			t.Errorf("Credits(%v).USD() = %q, want %q", tt.c, got, tt.usd)
		}
	}
}
