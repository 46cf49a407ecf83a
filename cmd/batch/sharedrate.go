package main

import (
	"github.com/batch-tool/batch/internal/cache"

	"fmt"
	"path/filepath"
	"runtime"

	"github.com/batch-tool/batch/internal/runner"
	"github.com/batch-tool/batch/internal/sharedrate"
)

// rateDirEnv names the environment variable that moves the shared
// rate-limit files out of the user's cache folder.
const rateDirEnv = "BATCH_RATE_DIR"

// shareRate makes cfg's rate limiter share its schedule with every other
// run using key on this machine, through a file in rateDir named for a
// hash of the key, and returns what closes it. When the file cannot be
// opened, the run keeps a limit of its own and the user is warned.
func (e *env) shareRate(cfg *runner.Config, key string) (closeFile func()) {
	dir, err := rateDir(runtime.GOOS, e.getenv)
	var f *sharedrate.File
	if err == nil {
		f, err = sharedrate.Open(filepath.Join(dir, sharedrate.Name(key)))
	}
	if err != nil {
		cfg.Warn(fmt.Sprintf("the rate limit is not shared with other runs on this machine (%v); set %s to a writable folder", err, rateDirEnv))
		return func() {}
	}
	cfg.RateState = f
	return func() { _ = f.Close() } // the file was only read and written in place; closing loses nothing
}

// rateDir returns the folder of the shared rate-limit files: $BATCH_RATE_DIR,
// else "rate" in batch's folder under the user's cache folder on goos
// (cache.UserDir).
func rateDir(goos string, getenv func(string) string) (string, error) {
	if dir := getenv(rateDirEnv); dir != "" {
		return dir, nil
	}
	dir, err := cache.UserDir(goos, getenv)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "rate"), nil
}
