package outdir

// processAlive says yes: without a check here, a temp file of another
// process is never taken for stale.
func processAlive(int) bool { return true }
