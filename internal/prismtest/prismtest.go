// Package prismtest runs Stoplight Prism as a validating proxy in front of a
// server, for contract tests against the Stability v1 OpenAPI spec.
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
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// SpecFile returns the absolute path of the OpenAPI snapshot the contract
// tests validate against: the 2025-02 v1 spec, the one that documents the
// JSON 200 body as {"artifacts":[…]} as the live API answers (see SPEC.md).
func SpecFile() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "stability-v1-openapi-2025-02.json")
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

// Start runs `prism proxy --errors` with SpecFile in front of upstream on a
// free loopback port and returns its base URL once it accepts connections.
// With --errors, Prism answers a request or response that violates the spec
// with an error (and lists violations in the sl-violations header). Prism
// stops when the test ends; its output is logged if the test failed.
func Start(t testing.TB, prism, upstream string) string {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prism, "proxy", SpecFile(), upstream,
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
