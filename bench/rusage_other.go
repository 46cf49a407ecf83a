//go:build !unix

package main

import "os"

// peakRSS reports no peak memory where there is no rusage.
func peakRSS(*os.ProcessState) (int64, bool) { return 0, false }
