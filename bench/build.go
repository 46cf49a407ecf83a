package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// binary is one build of batch.
type binary struct {
	rev   string // "base" or "head"
	label string // what it was built from, for the document
	path  string // "" when it could not be built
	why   string // why it could not be built
	help  map[string]string
}

// build builds the head and base binaries and the helpers. A base that
// cannot be built is marked so, and its column reads n/a.
func (b *bench) build(ctx context.Context) error {
	bin := filepath.Join(b.work, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	head := &binary{rev: "head", label: b.headLabel(ctx), path: filepath.Join(bin, "batch-head")}
	b.logf("building head (%s)", head.label)
	if err := goBuild(ctx, b.root, head.path, "./cmd/batch"); err != nil {
		return fmt.Errorf("build head: %w", err)
	}
	b.head = head
	b.decode = filepath.Join(bin, "yamldecode")
	b.loop = filepath.Join(bin, "keepalive")
	for path, pkg := range map[string]string{b.decode: "./bench/cmd/yamldecode", b.loop: "./bench/cmd/keepalive"} {
		if err := goBuild(ctx, b.root, path, pkg); err != nil {
			return fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	b.base = &binary{rev: "base", label: b.cfg.base}
	b.logf("building base %s from git archive", b.cfg.base)
	label, err := b.buildBase(ctx, filepath.Join(bin, "batch-base"))
	if err != nil {
		b.base.why = err.Error()
		b.logf("base: %v", err)
		return nil
	}
	b.base.label, b.base.path = label, filepath.Join(bin, "batch-base")
	return nil
}

// buildBase extracts the base revision with git archive into a folder of
// its own and builds batch there; it returns the revision's label.
func (b *bench) buildBase(ctx context.Context, out string) (string, error) {
	rev, err := git(ctx, b.root, "rev-parse", "--short", b.cfg.base+"^{commit}")
	if err != nil {
		return "", err
	}
	subject, err := git(ctx, b.root, "log", "-1", "--format=%s", rev)
	if err != nil {
		return "", err
	}
	src := filepath.Join(b.work, "base-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.CommandContext(ctx, "git", "archive", "--format=tar", rev)
	archive.Dir = b.root
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var archiveErrs, untarErrs bytes.Buffer // one each: the two run at once
	archive.Stderr, untar.Stderr = &archiveErrs, &untarErrs
	if err := untar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return "", fmt.Errorf("git archive %s: %w: %s", rev, err, bytes.TrimSpace(archiveErrs.Bytes()))
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("untar %s: %w: %s", rev, err, bytes.TrimSpace(untarErrs.Bytes()))
	}
	if err := goBuild(ctx, src, out, "./cmd/batch"); err != nil {
		return "", fmt.Errorf("build base %s: %w", rev, err)
	}
	return fmt.Sprintf("%s (%s)", rev, subject), nil
}

// headLabel names the working tree: its commit, and whether files differ.
func (b *bench) headLabel(ctx context.Context) string {
	rev, err := git(ctx, b.root, "rev-parse", "--short", "HEAD")
	if err != nil {
		return "working tree"
	}
	status, err := git(ctx, b.root, "status", "--porcelain", "--untracked-files=no")
	if err == nil && status != "" {
		return "working tree: " + rev + " with uncommitted changes"
	}
	return "working tree: " + rev
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var errs bytes.Buffer
	cmd.Stderr = &errs
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(errs.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

// goBuild builds pkg in the module at dir into out. -trimpath makes the
// base's packages that did not change hit the build cache.
func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w\n%s", err, msg)
	}
	return nil
}

// unsupported returns the first --flag of args that bin's subcommand does
// not know, or "" when it knows them all.
func (bin *binary) unsupported(ctx context.Context, args []string) string {
	if len(args) == 0 {
		return ""
	}
	sub := args[0]
	if bin.help == nil {
		bin.help = map[string]string{}
	}
	help, ok := bin.help[sub]
	if !ok {
		out, _ := exec.CommandContext(ctx, bin.path, sub, "-h").CombinedOutput()
		help = string(out)
		bin.help[sub] = help
	}
	for _, a := range args[1:] {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if !regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `\b`).MatchString(help) {
			return "--" + name
		}
	}
	return ""
}
