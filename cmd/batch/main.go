// Command batch turns a YAML manifest of Stability AI text-to-image jobs into
// images and a cost report. It prices every job exactly before anything is
// sent, refuses runs over budget, runs the jobs concurrently under the API's
// rate limit, and never pays twice for the same image.
//
// Usage:
//
//	batch init [--service S | --engine E] [FILE]
//	batch plan [flags] MANIFEST
//	batch run [flags] MANIFEST
//	batch report [flags] RUN_DIR|PLAN.json...
//	batch diff [flags] BASE HEAD
//	batch sandbox [flags]
//	batch schema
//	batch prices [--pricing ID]
//	batch cache stats|prune|verify [flags]
//	batch version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/batch-tool/batch/internal/manifest"
)

// Exit codes, as documented in the README.
const (
	exitOK          = 0   // everything asked for was done
	exitFailed      = 1   // some jobs failed or were filtered, or a runtime error stopped the run
	exitUsage       = 2   // usage error or invalid manifest; nothing was sent
	exitOverBudget  = 3   // the estimate is over budget, or a diff crossed its threshold
	exitLowBalance  = 4   // the account balance is below the estimate
	exitInterrupted = 130 // interrupted; a rerun resumes
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// env is what a command needs from its process: arguments aside, the
// environment, the standard streams and the clock.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	// now is the clock, for a test to fix; nil is the system's, which the
	// image cache then leaves to the filesystem (no file time set).
	now func() time.Time
	// isTerminal reports whether stderr is a terminal (live progress bar).
	isTerminal bool
	// ready, when non-nil, receives the sandbox's address once it listens
	// (tests use it to find a sandbox started on port 0).
	ready func(addr string)
	// planning, when non-nil, is called as a command starts to plan a
	// manifest, signals handled (a test signals the process then).
	planning func(ctx context.Context)
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return newEnv(getenv, stdout, stderr).run(args)
}

func newEnv(getenv func(string) string, stdout, stderr io.Writer) *env {
	return &env{getenv: getenv, stdout: stdout, stderr: stderr, isTerminal: isTerminal(stderr)}
}

// timeNow is the current time by e's clock.
func (e *env) timeNow() time.Time {
	if e.now == nil {
		return time.Now()
	}
	return e.now()
}

// run runs one command line under signal handling: the first SIGINT,
// SIGTERM or SIGHUP (a closed terminal or SSH session) cancels ctx, so the
// command stops, saves what it has and exits 130; the handlers are then
// removed, so a second signal kills the process at once.
func (e *env) run(args []string) int {
	var ctx context.Context
	var stop context.CancelFunc
	if sigs := stopSignals(); len(sigs) > 0 {
		ctx, stop = signal.NotifyContext(context.Background(), sigs...)
	} else { // all three ignored; NotifyContext with none would catch every signal
		ctx, stop = context.WithCancel(context.Background())
	}
	defer stop()
	// A normal return cancels ctx too (stop), and must not print the
	// notice: stopNotice, deferred last, runs first.
	stopNotice := context.AfterFunc(ctx, func() {
		stop()
		nl := ""
		if e.isTerminal {
			nl = "\n" // after the progress line
		}
		fmt.Fprintf(e.stderr, "%sbatch: interrupted; stopping and saving what is done (interrupt again to quit at once)\n", nl)
	})
	defer stopNotice()
	return e.main(ctx, args)
}

// stopSignals are the signals that stop a command: SIGINT, SIGTERM and
// SIGHUP, but for those the process was started ignoring, which stay
// ignored (nohup ignores SIGHUP, and a shell starts background jobs
// ignoring SIGINT; handling them would undo that).
func stopSignals() []os.Signal {
	var sigs []os.Signal
	for _, s := range []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP} {
		if !signal.Ignored(s) {
			sigs = append(sigs, s)
		}
	}
	return sigs
}

// main runs one command line and maps its error to an exit code; it is the
// only place that prints an error.
func (e *env) main(ctx context.Context, args []string) int {
	err := e.dispatch(ctx, args)
	var me *manifest.Errors
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errReported):
		// the command already told the user what happened
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// Interrupted: the notice said so, and the command said what it
		// saved and how to resume; "context canceled" would add nothing.
	case errors.As(err, &me):
		// FILE:LINE:COL: message lines, as compilers print them
		fmt.Fprintf(e.stderr, "%v\nbatch: %d problem(s) in %s; nothing was sent\n", me, len(*me), (*me)[0].File)
	default:
		fmt.Fprintf(e.stderr, "batch: %v\n", err)
	}
	return exitCode(ctx, err)
}

func (e *env) dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		e.usage(e.stderr)
		return usageErrorf("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "init":
		return e.initCmd(rest)
	case "plan":
		return e.plan(ctx, rest)
	case "run":
		return e.runCmd(ctx, rest)
	case "report":
		return e.report(ctx, rest)
	case "diff":
		return e.diff(ctx, rest)
	case "sandbox":
		return e.sandbox(ctx, rest)
	case "schema":
		return e.schema(rest)
	case "prices":
		return e.prices(rest)
	case "cache":
		return e.cacheCmd(ctx, rest)
	case "version", "--version", "-version":
		return e.version(rest)
	case "help", "-h", "-help", "--help":
		return e.help(ctx, rest)
	}
	e.usage(e.stderr)
	return usageErrorf("unknown command %q", cmd)
}

// commands returns the subcommands, in the order the usage lists them.
func commands() []string {
	return []string{"init", "plan", "run", "report", "diff", "sandbox", "schema", "prices", "cache", "version"}
}

// help prints the general usage, or with a command's name that command's
// synopsis and flags, to stdout.
func (e *env) help(ctx context.Context, args []string) error {
	switch {
	case len(args) == 0:
		e.usage(e.stdout)
		return nil
	case len(args) > 1:
		return usageErrorf("help: give one command, e.g. batch help run")
	case !slices.Contains(commands(), args[0]):
		return usageErrorf("help: unknown command %q (commands: %s)", args[0], strings.Join(commands(), ", "))
	}
	// A command's -h prints its flags to the command's error stream; asked
	// for, help is output.
	h := *e
	h.stderr = e.stdout
	return h.dispatch(ctx, []string{args[0], "-h"})
}

func (e *env) usage(w io.Writer) {
	fmt.Fprint(w, `batch turns a YAML manifest of Stability AI image jobs into images and a cost report.

Usage:
  batch init [flags] [FILE]                write a commented starter manifest (batch.yaml)
  batch plan [flags] MANIFEST              price every job; no key, no network
  batch run [flags] MANIFEST               plan, check budget and balance, then generate
  batch report [flags] RUN_DIR|PLAN.json... render a run's (or shards') report
  batch diff [flags] BASE HEAD             cost delta between two manifests or plans
  batch sandbox [flags]                    serve a local Stability-compatible API
  batch schema                             print the manifest's JSON Schema
  batch prices [--pricing ID]              list price sheets and the rules of one
  batch cache stats|prune|verify [flags]   show, trim or check the image cache
  batch version                            print the version

Run 'batch help COMMAND' (or 'batch COMMAND -h') for a command's flags. The
API key is read from STABILITY_API_KEY. Exit codes: 0 done, 1 jobs failed,
2 usage or invalid manifest, 3 over budget, 4 balance too low, 130 interrupted.
`)
}

// usageError is a mistake in the command line; it exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Sprintf(format, a...)}
}

// invalidError is input that cannot be used (a price file, an unpriceable
// job); it exits 2, like a usage error: nothing was sent.
type invalidError struct{ err error }

func (e *invalidError) Error() string { return e.err.Error() }
func (e *invalidError) Unwrap() error { return e.err }

// errReported marks an error whose message the command already printed.
var errReported = errors.New("reported")

// isTerminal reports whether w is a terminal (not merely a character
// device: /dev/null is one too, and must get plain progress lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	// Control, unlike Fd, leaves a non-blocking file non-blocking.
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	tty := false
	if err := rc.Control(func(fd uintptr) { tty = isTerminalFd(fd) }); err != nil {
		return false
	}
	return tty
}
