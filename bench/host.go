package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// findParallel finds GNU parallel and curl, installing Debian's packages
// when they are missing and -install allows it.
func (b *bench) findParallel(ctx context.Context) {
	isGNU := func() string {
		p, err := exec.LookPath("parallel")
		if err != nil {
			return ""
		}
		out, _ := exec.CommandContext(ctx, p, "--version").Output()
		if !bytes.Contains(out, []byte("GNU parallel")) {
			return ""
		}
		if _, err := exec.LookPath("curl"); err != nil {
			return ""
		}
		return p
	}
	if b.parallel = isGNU(); b.parallel != "" {
		return
	}
	if !b.cfg.install {
		b.noParallel = "GNU parallel or curl not installed (-install=false)"
		return
	}
	b.logf("installing Debian's parallel and curl with apt-get")
	sh := "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq parallel curl"
	if os.Geteuid() != 0 {
		sh = "sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq parallel curl"
	}
	if out, err := exec.CommandContext(ctx, "sh", "-c", sh).CombinedOutput(); err != nil {
		b.noParallel = fmt.Sprintf("installing parallel failed: %v: %s", err, lastLine(out))
		return
	}
	if b.parallel = isGNU(); b.parallel == "" {
		b.noParallel = "GNU parallel not found after installing it"
	}
}

func lastLine(out []byte) string {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	return string(lines[len(lines)-1])
}

// loadAverage returns the 1-minute load average, or "unknown".
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(data)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// machine describes the machine in one line: CPUs, memory, Go, OS.
func machine(ctx context.Context) string {
	cpu := ""
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = " (" + strings.TrimSpace(v) + ")"
				break
			}
		}
		f.Close()
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kib); err == nil {
			mem = fmt.Sprintf(", %.1f GiB RAM", float64(kib)/(1<<20))
		}
	}
	kernel := ""
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = " (kernel " + strings.TrimSpace(string(data)) + ")"
	}
	goVersion := runtime.Version()
	if out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%d CPUs%s%s; Go %s; %s/%s%s", runtime.NumCPU(), cpu, mem, goVersion, runtime.GOOS, runtime.GOARCH, kernel)
}
