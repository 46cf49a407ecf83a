package stability

import (
	"testing"
)

func TestValidNumber(t *testing.T) {
	for in, want := range map[string]bool{
		"0": true, "-0": true, "12": true, "1.5": true, "-1.5e-3": true, "1E+9": true, "0.0": true,
		"": false, "-": false, "01": false, "1.": false, ".5": false, "1e": false, "1e+": false, "+1": false, "1-": false, "--1": false,
	} {
		if got := validNumber([]byte(in)); got != want {
			t.Errorf("validNumber(%q) = %v, want %v", in, got, want)
		}
	}
}
