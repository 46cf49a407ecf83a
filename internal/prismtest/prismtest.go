// Package prismtest runs Stoplight Prism as a validating proxy in front of a
// server, for contract tests against the Stability OpenAPI specs kept here:
// the v1 spec (V1Spec) and the Stable Image (v2beta) spec (StableImageSpec).
// SPEC.md says where each snapshot comes from.
//
// Tests call Executable, which skips the test when BATCH_PRISM is unset
// (and fails it when CI=true, because .ci/run installs Prism), then Start.
// SafeMultipart gets a request with image files through Prism byte for
// byte, and StableImageFixes lets requests that meet the Stable Image
// spec's two known bugs through it.
package prismtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
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
// by PrismCopy, with fixes applied.
// With --errors, Prism answers a request or response that violates the spec
// with an error (and lists violations in the sl-violations header). Prism
// stops when the test ends; its output is logged if the test failed.
func Start(t testing.TB, prism, spec, upstream string, fixes ...Fix) string {
	t.Helper()
	spec = PrismCopy(t, spec, fixes...)
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
// applies fixes; it changes nothing else. A fix that does not apply fails
// the test.
func PrismCopy(t testing.TB, spec string, fixes ...Fix) string {
	t.Helper()
	data, err := os.ReadFile(spec)
	if err != nil {
		t.Fatalf("read spec: %v", err)
	}
	data = mediaTypeParam.ReplaceAll(data, []byte(`"$1; $2=\"$3\""`))
	if len(fixes) > 0 {
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("read spec: %v", err)
		}
		for _, f := range fixes {
			if err := f.Apply(doc); err != nil {
				t.Fatalf("spec fix %q: %v", f.Name, err)
			}
		}
		if data, err = json.Marshal(doc); err != nil {
			t.Fatalf("write spec copy: %v", err)
		}
	}
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

// Fix corrects one known bug of a spec snapshot in the copy Prism reads.
// Apply returns an error when the bug is not where the fix expects it, so a
// fix cannot outlive its bug unnoticed.
type Fix struct {
	Name  string // what the fix corrects, for messages
	Apply func(spec map[string]any) error
}

// StableImageFixes returns the corrections of the two bugs of the 2026-09
// Stable Image snapshot that SPEC.md lists: sd3.5-flash added to
// generate/sd3's model enum, and prompt removed from edit/erase's required
// fields. With them, Prism forwards the requests those bugs would have it
// refuse, and validates everything else about them and their answers.
func StableImageFixes() []Fix {
	return []Fix{
		{Name: "generate/sd3 model enum lacks sd3.5-flash", Apply: func(spec map[string]any) error {
			model, err := lookup(spec, "paths", "/v2beta/stable-image/generate/sd3", "post", "requestBody", "content",
				"multipart/form-data", "schema", "properties", "model")
			if err != nil {
				return err
			}
			enum, ok := model["enum"].([]any)
			if !ok || slices.Contains(enum, any("sd3.5-flash")) {
				return errors.New("model enum absent or already has sd3.5-flash")
			}
			model["enum"] = append(enum, "sd3.5-flash")
			return nil
		}},
		{Name: "edit/erase requires a prompt it does not define", Apply: func(spec map[string]any) error {
			schema, err := lookup(spec, "paths", "/v2beta/stable-image/edit/erase", "post", "requestBody", "content",
				"multipart/form-data", "schema")
			if err != nil {
				return err
			}
			required, _ := schema["required"].([]any)
			props, _ := schema["properties"].(map[string]any)
			i := slices.Index(required, any("prompt"))
			if _, defined := props["prompt"]; i < 0 || defined {
				return errors.New("prompt is not required, or is defined")
			}
			schema["required"] = slices.Delete(required, i, i+1)
			return nil
		}},
	}
}

// lookup returns the JSON object at path in doc.
func lookup(doc map[string]any, path ...string) (map[string]any, error) {
	for i, key := range path {
		next, ok := doc[key].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("no object at %q", path[:i+1])
		}
		doc = next
	}
	return doc, nil
}

// SafeMultipart returns a multipart/form-data body (with the given
// boundary) that carries the same form as body but passes through Prism
// unchanged. Prism's proxy reads a body that is not JSON as UTF-8 text and
// forwards that text, so every byte sequence that is not valid UTF-8 (most
// of an image file's bytes from 0x80 up) reaches the upstream server as
// U+FFFD; ASCII survives. SafeMultipart therefore sends each file part
// quoted-printable (Content-Transfer-Encoding, RFC 2045 §6.7, binary mode:
// pure ASCII); text fields, which are UTF-8, are left as they are. Go's
// multipart.Reader decodes such parts transparently, so an upstream Go
// server reads the original bytes; Prism's own multipart parser takes the
// encoded text as the field's value, which is all the spec's
// {type: string, format: binary} asks of it.
func SafeMultipart(body []byte, boundary string) ([]byte, error) {
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var out bytes.Buffer
	mw := multipart.NewWriter(&out)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, err
	}
	for {
		part, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(part)
		if err != nil {
			return nil, err
		}
		header := part.Header
		if part.FileName() != "" && header.Get("Content-Transfer-Encoding") == "" {
			var enc bytes.Buffer
			qp := quotedprintable.NewWriter(&enc)
			qp.Binary = true
			if _, err := qp.Write(data); err != nil {
				return nil, err
			}
			if err := qp.Close(); err != nil {
				return nil, err
			}
			if bytes.Contains(enc.Bytes(), []byte("--"+boundary)) {
				return nil, fmt.Errorf("part %q encoded contains the boundary", part.FormName())
			}
			header.Set("Content-Transfer-Encoding", "quoted-printable")
			data = enc.Bytes()
		}
		w, err := mw.CreatePart(header)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(data); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
