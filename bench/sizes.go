package main

import "time"

// sizes are how big each measurement is.
type sizes struct {
	explicit []int        // jobs of the explicit manifests planned
	matrix   []matrixSpec // the matrix manifests planned
	diffJobs int          // jobs of each of the two manifests diffed
	runJobs  int          // jobs run by batch, the loop and parallel
	// runRounds is how many rounds the run section makes of batch and the
	// loop, in turn, each client's best shown; parallel runs once.
	runRounds int
	rssJobs   []int // jobs of the runs whose peak memory is shown
	rate      rateSizes
	// repeats is how many times a plan of jobs jobs is run for its best.
	repeats func(jobs int) int
}

// rateSizes shape the rate section: a sandbox limiting limit requests per
// window and locking a key out for lockout, one run of jobs jobs against
// two of jobs/2 at once, at each latency.
type rateSizes struct {
	limit       int
	window      time.Duration
	lockout     time.Duration
	jobs        int
	concurrency int
	latencies   []time.Duration
}

// fullSizes are the document's sizes. The rate limit is the API's 150
// per 10 s with its 60 s lock-out, five times faster, so a run takes
// seconds rather than minutes.
func fullSizes() sizes {
	return sizes{
		explicit:  []int{10_000, 100_000, 500_000},
		matrix:    []matrixSpec{{subjects: 100, places: 100, seeds: 100}, {subjects: 200, places: 100, seeds: 100}},
		diffJobs:  100_000,
		runJobs:   5_000,
		runRounds: 3,
		rssJobs:   []int{1_000, 10_000, 100_000},
		rate: rateSizes{
			limit: 150, window: 2 * time.Second, lockout: 12 * time.Second,
			jobs: 600, concurrency: 300,
			latencies: []time.Duration{100 * time.Millisecond, 3 * time.Second},
		},
		repeats: func(jobs int) int {
			switch {
			case jobs <= 10_000:
				return 3
			case jobs <= 100_000:
				return 2
			}
			return 1
		},
	}
}

// quickSizes check that every section runs; their figures mean nothing.
func quickSizes() sizes {
	return sizes{
		explicit:  []int{200, 1_000},
		matrix:    []matrixSpec{{subjects: 10, places: 10, seeds: 20}},
		diffJobs:  1_000,
		runJobs:   100,
		runRounds: 1,
		rssJobs:   []int{50, 200},
		rate: rateSizes{
			limit: 20, window: time.Second, lockout: 2 * time.Second,
			jobs: 30, concurrency: 40,
			latencies: []time.Duration{50 * time.Millisecond},
		},
		repeats: func(int) int { return 1 },
	}
}
