// Package prismtest runs Stoplight Prism as a validating proxy in front of a
// server, for contract tests against the Stability OpenAPI specs kept here:
// the v1 spec (V1Spec) and the Stable Image (v2beta) spec (StableImageSpec).
// SPEC.md says where each snapshot comes from.
//
// Tests call Executable, which skips the test when BATCH_PRISM is unset
// (and fails it when CI=true, because .ci/run installs Prism), then Start.
package prismtest

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// V1Spec returns the absolute path of the v1 OpenAPI snapshot: the 2025-02
// spec, the one that documents the JSON 200 body as {"artifacts":[…]} as
// the live API answers (see SPEC.md).
func V1Spec() string { return specPath("stability-v1-openapi-2025-02.json") }

// StableImageSpec returns the absolute path of the Stable Image (v2beta)
// OpenAPI snapshot: the spec Stability served in September 2026 (see
// SPEC.md for its origin and its two known bugs).
func StableImageSpec() string { return specPath("stability-v2beta-openapi-2026-09.json") }

func specPath(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), name)
}

// Executable returns the prism executable named by BATCH_PRISM. It skips
// the test when the variable is unset, or fails it when CI=true.
func Executable(t testing.TB) string {
	t.Helper()
	prism := os.Getenv("BATCH_PRISM")
	if prism == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BATCH_PRISM is not set in CI; .ci/run installs Prism with .ci/prism-install.sh")
		}
		t.Skip("BATCH_PRISM is not set; .ci/prism-install.sh installs Prism and prints its path")
	}
	return prism
}

// Start runs `prism proxy --errors` with the OpenAPI file spec (V1Spec or
// StableImageSpec) in front of upstream on a free loopback port and returns
// its base URL once it accepts connections. Prism reads a copy of spec made
// by PrismCopy.
// With --errors, Prism answers a request or response that violates the spec
// with an error (and lists violations in the sl-violations header). Prism
// stops when the test ends; its output is logged if the test failed.
func Start(t testing.TB, prism, spec, upstream string) string {
	t.Helper()
	spec = PrismCopy(t, spec)
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prism, "proxy", spec, upstream,
		"--errors", "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--cors=false")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prism: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("prism output:\n%s", out.String())
		}
	})

	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // let the cleanup's receive return
			t.Fatalf("prism exited before answering: %v\n%s", err, out.String())
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("prism did not listen on %s within 60s\n%s", addr, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mediaTypeParam matches a JSON string that is a media type with one
// parameter whose value holds a slash, e.g. "application/json; type=image/png".
var mediaTypeParam = regexp.MustCompile(`"([a-z]+/[a-z0-9.+-]+); ?([a-z]+)=([a-z]+/[a-z0-9.+-]+)"`)

// PrismCopy writes, in the test's temporary folder, a copy of the OpenAPI
// file spec that Prism can read, and returns its path. The Stable Image spec
// names its JSON answers "application/json; type=image/png", a parameter
// value with a slash that media-type syntax only allows quoted (RFC 9110
// §5.6.6); Prism's media-type parser throws on it and the whole proxy exits.
// The copy quotes such values ("application/json; type=\"image/png\"") and
// changes nothing else.
func PrismCopy(t testing.TB, spec string) string {
	t.Helper()
	data, err := os.ReadFile(spec)
	if err != nil {
		t.Fatalf("read spec: %v", err)
	}
	data = mediaTypeParam.ReplaceAll(data, []byte(`"$1; $2=\"$3\""`))
	out := filepath.Join(t.TempDir(), filepath.Base(spec))
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatalf("write spec copy: %v", err)
	}
	return out
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a child's
// stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
