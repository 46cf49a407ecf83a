package main

import (
	"errors"
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
// else batch/rate in the user's cache folder, found as os.UserCacheDir finds
// it on goos but through getenv ($XDG_CACHE_HOME, else $HOME/.cache, on
// Linux and the BSDs; $HOME/Library/Caches on macOS; %LocalAppData% on
// Windows).
func rateDir(goos string, getenv func(string) string) (string, error) {
	if dir := getenv(rateDirEnv); dir != "" {
		return dir, nil
	}
	var base string
	switch goos {
	case "windows":
		base = getenv("LocalAppData")
		if base == "" {
			return "", errors.New("%LocalAppData% is not set")
		}
	case "darwin", "ios":
		home := getenv("HOME")
		if home == "" {
			return "", errors.New("$HOME is not set")
		}
		base = filepath.Join(home, "Library", "Caches")
	case "plan9":
		home := getenv("home")
		if home == "" {
			return "", errors.New("$home is not set")
		}
		base = filepath.Join(home, "lib", "cache")
	default:
		base = getenv("XDG_CACHE_HOME")
		if base == "" {
			home := getenv("HOME")
			if home == "" {
				return "", errors.New("neither $XDG_CACHE_HOME nor $HOME is set")
			}
			base = filepath.Join(home, ".cache")
		}
	}
	if !filepath.IsAbs(base) {
		return "", fmt.Errorf("the cache folder %s is a relative path", base)
	}
	return filepath.Join(base, "batch", "rate"), nil
}
