package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/prismtest"
)

// violation is one entry of Prism's sl-violations header, and of the
// "validation" list of its VIOLATIONS problem answer.
type violation struct {
	Location []string `json:"location"`
	Severity string   `json:"severity"`
	Code     any      `json:"code"`
	Message  string   `json:"message"`
}

func (v violation) String() string {
	return fmt.Sprintf("%s %s: %s", v.Severity, strings.Join(v.Location, "."), v.Message)
}

// specBug reports whether v is the one violation a correct answer cannot
// avoid: the spec's Error schema lists "status" among its required properties
// but never defines it, and the live API's error bodies have no such field
// (CONTRACT.md §6; the real 404 body quoted in jezs00/pycasso#70 is
// {"id","message","name"}). Only that exact complaint about an error
// answer's body is tolerated.
func specBug(status int, v violation) bool {
	return status >= 400 &&
		strings.Join(v.Location, ".") == "response.body" &&
		strings.Contains(v.Message, "required property 'status'")
}

// TestContractPrism sends the requests our client sends through Prism's
// validating proxy in front of the sandbox and fails on any request or
// response that violates the v1 OpenAPI spec. Set BATCH_PRISM to the prism
// executable (.ci/prism-install.sh prints it) to run it.
func TestContractPrism(t *testing.T) {
	prism := prismtest.Executable(t)
	sb := newServer(t, Config{Key: "sk-contract", FilterWords: []string{"forbidden"}})
	upstream := httptest.NewServer(sb) // listens on 127.0.0.1, random port
	defer upstream.Close()

	base := prismtest.Start(t, prism, upstream.URL)

	type exchange struct {
		name    string
		method  string
		path    string
		body    string
		accept  string
		noAuth  bool
		status  int
		check   func(t *testing.T, h http.Header, body []byte)
		allowed func(status int, v violation) bool // violations tolerated; nil tolerates none
	}
	// Prism reads every non-JSON upstream body as UTF-8 text and re-sends
	// it, so the PNG bytes arrive mangled (stoplightio/prism#1321, #2349).
	// Through Prism we check the status and headers; the bytes are checked
	// by sending the same request to the sandbox directly.
	pngCheck := func(path, body string, w, h int) func(*testing.T, http.Header, []byte) {
		return func(t *testing.T, hdr http.Header, _ []byte) {
			if hdr.Get("Content-Type") != "image/png" || hdr.Get("Finish-Reason") != "SUCCESS" {
				t.Errorf("PNG answer headers = %v, want Content-Type image/png and Finish-Reason SUCCESS", hdr)
			}
			if _, err := strconv.ParseUint(hdr.Get("Seed"), 10, 32); err != nil {
				t.Errorf("Seed header %q: %v", hdr.Get("Seed"), err)
			}
			req := request("POST", upstream.URL+path, body, "image/png")
			req.RequestURI = ""
			req.Header.Set("Authorization", "Bearer sk-contract")
			resp, err := upstream.Client().Do(req)
			if err != nil {
				t.Fatalf("direct request: %v", err)
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("direct request: %v", err)
			}
			checkPNG(t, data, w, h)
		}
	}
	jsonCheck := func(n int, reason string) func(*testing.T, http.Header, []byte) {
		return func(t *testing.T, _ http.Header, body []byte) {
			var b artifactsBody
			if err := json.Unmarshal(body, &b); err != nil || len(b.Artifacts) != n {
				t.Fatalf("JSON answer: %d artifacts (%v), want %d", len(b.Artifacts), err, n)
			}
			for _, a := range b.Artifacts {
				if a.FinishReason != reason {
					t.Errorf("finishReason = %s, want %s", a.FinishReason, reason)
				}
				img, err := base64.StdEncoding.DecodeString(a.Base64)
				if err != nil {
					t.Fatalf("base64: %v", err)
				}
				checkPNG(t, img, 1024, 1024)
			}
		}
	}
	const (
		pngBody  = `{"text_prompts":[{"text":"a ceramic mug on a wooden table","weight":1}],"width":1024,"height":1024,"steps":30,"cfg_scale":7,"samples":1,"seed":1234,"sampler":"K_DPMPP_2M","style_preset":"photographic"}`
		sd16     = "/v1/generation/stable-diffusion-v1-6/text-to-image"
		sd16Body = `{"text_prompts":[{"text":"a castle","weight":1},{"text":"blurry","weight":-1}],"width":832,"height":512,"steps":20,"samples":1,"seed":0}`
	)
	exchanges := []exchange{
		{name: "png one sample", method: "POST", path: t2iSDXL, accept: "image/png", status: 200,
			body: pngBody, check: pngCheck(t2iSDXL, pngBody, 1024, 1024)},
		{name: "png random seed sd 1.6", method: "POST", path: sd16, accept: "image/png", status: 200,
			body: sd16Body, check: pngCheck(sd16, sd16Body, 832, 512)},
		{name: "json two samples", method: "POST", path: t2iSDXL, accept: "application/json", status: 200,
			body:  `{"text_prompts":[{"text":"a lighthouse on a cliff","weight":1}],"width":1024,"height":1024,"steps":30,"samples":2,"seed":99}`,
			check: jsonCheck(2, "SUCCESS")},
		{name: "json three samples all options", method: "POST", path: t2iSDXL, accept: "application/json", status: 200,
			body:  `{"text_prompts":[{"text":"a fox in snow","weight":1},{"text":"watermark","weight":-1}],"width":1024,"height":1024,"steps":40,"cfg_scale":12.5,"clip_guidance_preset":"NONE","sampler":"K_EULER","samples":3,"seed":4294967295,"style_preset":"anime"}`,
			check: jsonCheck(3, "SUCCESS")},
		{name: "json filtered", method: "POST", path: t2iSDXL, accept: "application/json", status: 200,
			body:  `{"text_prompts":[{"text":"something forbidden","weight":1}],"width":1024,"height":1024,"steps":30,"samples":2,"seed":5}`,
			check: jsonCheck(2, "CONTENT_FILTERED")},
		{name: "balance", method: "GET", path: "/v1/user/balance", accept: "application/json", status: 200},
		{name: "account", method: "GET", path: "/v1/user/account", accept: "application/json", status: 200},
		{name: "engines", method: "GET", path: "/v1/engines/list", accept: "application/json", status: 200},
		{name: "unknown engine", method: "POST", path: "/v1/generation/stable-diffusion-v1-5x/text-to-image", accept: "application/json", status: 404,
			body: `{"text_prompts":[{"text":"a cat","weight":1}],"samples":1}`, allowed: specBug},
		{name: "sdxl wrong size", method: "POST", path: t2iSDXL, accept: "application/json", status: 400,
			body: `{"text_prompts":[{"text":"a cat","weight":1}],"width":512,"height":512,"samples":1}`, allowed: specBug},
		{name: "png with two samples", method: "POST", path: t2iSDXL, accept: "image/png", status: 400,
			body: `{"text_prompts":[{"text":"a cat","weight":1}],"width":1024,"height":1024,"samples":2}`, allowed: specBug},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, ex := range exchanges {
		t.Run(ex.name, func(t *testing.T) {
			var body io.Reader
			if ex.body != "" {
				body = strings.NewReader(ex.body)
			}
			req, err := http.NewRequestWithContext(t.Context(), ex.method, base+ex.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if !ex.noAuth {
				req.Header.Set("Authorization", "Bearer sk-contract")
			}
			req.Header.Set("Stability-Client-ID", "batch")
			req.Header.Set("Stability-Client-Version", "0.0.0-test")
			req.Header.Set("Accept", ex.accept)
			if ex.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s via prism: %v", ex.method, ex.path, err)
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read answer: %v", err)
			}

			var found []violation
			if h := resp.Header.Get("sl-violations"); h != "" {
				if err := json.Unmarshal([]byte(h), &found); err != nil {
					t.Fatalf("sl-violations header %q: %v", h, err)
				}
			}
			status := resp.StatusCode
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
				// Prism answered itself: with --errors a violation becomes a
				// problem answer instead of the sandbox's.
				var p struct {
					Type       string      `json:"type"`
					Title      string      `json:"title"`
					Detail     string      `json:"detail"`
					Validation []violation `json:"validation"`
				}
				_ = json.Unmarshal(data, &p)
				if !strings.HasSuffix(p.Type, "VIOLATIONS") {
					t.Fatalf("prism refused: %d %s: %s (%s)", status, p.Title, p.Detail, data)
				}
				found = append(found, p.Validation...)
				status = ex.status // the sandbox's status is hidden behind the problem
			}
			for _, v := range found {
				if ex.allowed != nil && ex.allowed(ex.status, v) {
					t.Logf("tolerated spec bug: %s", v)
					continue
				}
				t.Errorf("spec violation: %s", v)
			}
			if status != ex.status {
				t.Fatalf("status = %d, want %d; body %.300s", status, ex.status, data)
			}
			if ex.check != nil && resp.StatusCode == ex.status {
				ex.check(t, resp.Header, data)
			}
		})
	}
	if st := sb.Stats(); st.Generations != 7 {
		t.Errorf("sandbox answered %d generations, want 5 through prism and 2 direct (Stats %+v)", st.Generations, st)
	}
}
