package manifest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseRate reads a request limit written N/DURATION, such as "150/10s" or
// "2/1m": at most n requests in any window of that length. A bare unit
// ("60/s", "1000/m") means one of that unit, and spaces around the text are
// ignored. n is a whole number from 1 to 2147483647 and window a positive
// Go duration; on error both are zero. The manifest's rate and the --rate
// flag are both read by it, so they accept the same text.
func ParseRate(s string) (n int, window time.Duration, err error) {
	ns, ds, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("must be N/DURATION, e.g. 150/10s or 60/s, got %q", s)
	}
	c, err := strconv.ParseUint(ns, 10, 31) // digits only: no sign, no underscores
	if err != nil || c < 1 {
		return 0, 0, fmt.Errorf("request count must be a whole number from 1 to %d, got %q", math.MaxInt32, ns)
	}
	d := ds
	if d != "" && (d[0] < '0' || d[0] > '9') && d[0] != '.' {
		d = "1" + d // a bare unit: one of it
	}
	w, err := time.ParseDuration(d)
	if err != nil || w <= 0 {
		return 0, 0, fmt.Errorf("window must be a positive duration such as 10s, 1m or s, got %q", ds)
	}
	return int(c), w, nil
}
