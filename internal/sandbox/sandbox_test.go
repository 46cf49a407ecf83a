package sandbox

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/engine"
)

const (
	sdxl    = "stable-diffusion-xl-1024-v1-0"
	t2iSDXL = "/v1/generation/" + sdxl + "/text-to-image"
	okBody  = `{"text_prompts":[{"text":"a lighthouse on a cliff"}],"width":1024,"height":1024,"steps":30,"seed":1234}`
)

// pricer is a Pricer made of functions; a nil one prices nothing.
type pricer struct {
	image   func(engine string, width, height, steps int) (cost.Credits, error)
	service func(service, model string) (cost.Credits, error)
}

func (p pricer) ImagePrice(engine string, width, height, steps int) (cost.Credits, error) {
	if p.image == nil {
		return 0, fmt.Errorf("no price for %s images", engine)
	}
	return p.image(engine, width, height, steps)
}

func (p pricer) ServicePrice(service, model string) (cost.Credits, error) {
	if p.service == nil {
		return 0, fmt.Errorf("no price for %s %s", service, model)
	}
	return p.service(service, model)
}

// flat prices every image and every service at c.
func flat(c cost.Credits) pricer {
	return pricer{
		image:   func(string, int, int, int) (cost.Credits, error) { return c, nil },
		service: func(string, string) (cost.Credits, error) { return c, nil },
	}
}

// free prices everything at zero credits.
var free = flat(0)

func newServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	return s
}

// request builds a request the way our client sends it.
func request(method, path, body, accept string) *http.Request {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	req.Header.Set("Authorization", "Bearer sk-test")
	req.Header.Set("Stability-Client-ID", "batch-test")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return req
}

func serve(s http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// errorOf decodes a v1 error body, failing the test if it is not one.
func errorOf(t *testing.T, rec *httptest.ResponseRecorder) errorBody {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var e errorBody
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("decode error body: %v", err)
	}
	if e.ID == "" || e.Name == "" || e.Message == "" {
		t.Errorf("error body %+v has an empty field", e)
	}
	return e
}

func artifactsOf(t *testing.T, rec *httptest.ResponseRecorder) []artifact {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var b artifactsBody
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("decode artifacts: %v", err)
	}
	return b.Artifacts
}

func checkPNG(t *testing.T, data []byte, width, height int) {
	t.Helper()
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("png.DecodeConfig = %v", err)
	}
	if cfg.Width != width || cfg.Height != height {
		t.Errorf("PNG size = %dx%d, want %dx%d", cfg.Width, cfg.Height, width, height)
	}
	if _, err := png.Decode(bytes.NewReader(data)); err != nil {
		t.Errorf("png.Decode = %v", err)
	}
}

func TestValidation(t *testing.T) {
	prompt := `"text_prompts":[{"text":"a cat"}]`
	long := strings.Repeat("é", 2001)
	tests := []struct {
		name   string
		engine string
		body   string
		accept string
		status int
		err    string // wanted error name; "" for 200
	}{
		{"minimal sdxl", sdxl, `{` + prompt + `}`, "", 200, ""},
		{"all fields", sdxl, `{` + prompt + `,"width":1152,"height":896,"cfg_scale":35,"clip_guidance_preset":"FAST_BLUE","sampler":"K_DPMPP_2M","samples":10,"seed":4294967295,"steps":50,"style_preset":"photographic","extras":{"x":1}}`, "application/json", 200, ""},
		{"negative prompt", sdxl, `{"text_prompts":[{"text":"a cat","weight":1},{"text":"blurry","weight":-1}]}`, "", 200, ""},
		{"2000 characters", sdxl, `{"text_prompts":[{"text":"` + long[:4000] + `"}]}`, "", 200, ""},
		{"unknown field", sdxl, `{` + prompt + `,"colour":"red"}`, "", 400, "bad_request"},
		{"unknown prompt field", sdxl, `{"text_prompts":[{"text":"a","strength":1}]}`, "", 400, "bad_request"},
		{"not json", sdxl, `{"text_prompts":`, "", 400, "bad_request"},
		{"trailing data", sdxl, `{` + prompt + `} {}`, "", 400, "bad_request"},
		{"empty body", sdxl, ``, "", 400, "bad_request"},
		{"wrong type", sdxl, `{` + prompt + `,"width":"1024"}`, "", 400, "bad_request"},
		{"no prompts", sdxl, `{"width":1024,"height":1024}`, "", 400, "bad_request"},
		{"empty prompts", sdxl, `{"text_prompts":[]}`, "", 400, "bad_request"},
		{"prompt without text", sdxl, `{"text_prompts":[{"weight":1}]}`, "", 400, "bad_request"},
		{"blank prompt", sdxl, `{"text_prompts":[{"text":"  "}]}`, "", 400, "bad_request"},
		{"2001 characters", sdxl, `{"text_prompts":[{"text":"` + long + `"}]}`, "", 400, "bad_request"},
		{"sdxl 512x512", sdxl, `{` + prompt + `,"width":512,"height":512}`, "", 400, "invalid_sdxl_v1_dimensions"},
		{"sdxl default height", sdxl, `{` + prompt + `,"width":1152}`, "", 400, "invalid_sdxl_v1_dimensions"},
		{"v1-5 too many pixels", "stable-diffusion-v1-5", `{` + prompt + `,"width":1088,"height":1024}`, "", 400, "invalid_pixel_count"},
		{"v1-5 not multiple of 64", "stable-diffusion-v1-5", `{` + prompt + `,"width":500,"height":512}`, "", 400, "invalid_height_or_width"},
		{"768 too few pixels", "stable-diffusion-768-v2-1", `{` + prompt + `,"width":512,"height":512}`, "", 400, "invalid_pixel_count"},
		{"beta both sides above 512", "stable-diffusion-xl-beta-v2-2-2", `{` + prompt + `,"width":640,"height":640}`, "", 400, "invalid_sdxl_v222_dimensions"},
		{"v1-5 150 steps", "stable-diffusion-v1-5", `{` + prompt + `,"steps":150}`, "", 200, ""},
		{"sdxl 51 steps", sdxl, `{` + prompt + `,"steps":51}`, "", 400, "bad_request"},
		{"9 steps", "stable-diffusion-v1-5", `{` + prompt + `,"steps":9}`, "", 400, "bad_request"},
		{"cfg_scale 35.5", sdxl, `{` + prompt + `,"cfg_scale":35.5}`, "", 400, "bad_request"},
		{"cfg_scale -1", sdxl, `{` + prompt + `,"cfg_scale":-1}`, "", 400, "bad_request"},
		{"samples 0", sdxl, `{` + prompt + `,"samples":0}`, "", 400, "invalid_samples"},
		{"samples 11", sdxl, `{` + prompt + `,"samples":11}`, "", 400, "invalid_samples"},
		{"png with 2 samples", sdxl, `{` + prompt + `,"samples":2}`, "image/png", 400, "invalid_samples"},
		{"png with 1 sample", sdxl, `{` + prompt + `,"samples":1}`, "image/png", 200, ""},
		{"seed too large", sdxl, `{` + prompt + `,"seed":4294967296}`, "", 400, "bad_request"},
		{"seed negative", sdxl, `{` + prompt + `,"seed":-1}`, "", 400, "bad_request"},
		{"seed fractional", sdxl, `{` + prompt + `,"seed":1.5}`, "", 400, "bad_request"},
		{"bad sampler", sdxl, `{` + prompt + `,"sampler":"EULER"}`, "", 400, "bad_request"},
		{"bad style", sdxl, `{` + prompt + `,"style_preset":"watercolour"}`, "", 400, "bad_request"},
		{"bad clip preset", sdxl, `{` + prompt + `,"clip_guidance_preset":"FAST"}`, "", 400, "bad_request"},
		{"extras not an object", sdxl, `{` + prompt + `,"extras":[1]}`, "", 400, "bad_request"},
		{"unsupported accept", sdxl, `{` + prompt + `}`, "text/plain", 400, "bad_request"},
		{"unknown engine", "stable-diffusion-v9", `{` + prompt + `}`, "", 404, "not_found"},
	}
	s := newServer(t, Config{RateLimit: -1, Pricer: free})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(s, request("POST", "/v1/generation/"+tt.engine+"/text-to-image", tt.body, tt.accept))
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.err == "" {
				return
			}
			if e := errorOf(t, rec); e.Name != tt.err {
				t.Errorf("error name = %q (%s), want %q", e.Name, e.Message, tt.err)
			}
		})
	}
}

func TestContentTypeRequired(t *testing.T) {
	s := newServer(t, Config{})
	req := request("POST", t2iSDXL, okBody, "")
	req.Header.Set("Content-Type", "text/plain")
	rec := serve(s, req)
	if rec.Code != 400 || errorOf(t, rec).Name != "bad_request" {
		t.Errorf("text/plain body: status %d, want 400 bad_request", rec.Code)
	}
}

func TestNotFound(t *testing.T) {
	s := newServer(t, Config{})
	rec := serve(s, request("POST", "/v1/generation/some-fake-engine/text-to-image", okBody, ""))
	e := errorOf(t, rec)
	if want := "The specified engine (ID some-fake-engine) was not found."; rec.Code != 404 || e.Name != "not_found" || e.Message != want {
		t.Errorf("unknown engine = %d %+v, want 404 not_found %q", rec.Code, e, want)
	}
	rec = serve(s, request("GET", "/v1/user/nothing", "", ""))
	if e := errorOf(t, rec); rec.Code != 404 || e.Name != "not_found" {
		t.Errorf("unknown path = %d %+v, want 404 not_found", rec.Code, e)
	}
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name   string
		key    string // Config.Key
		header string // Authorization; "-" for none
		status int
	}{
		{"no header", "", "-", 401},
		{"empty bearer", "", "Bearer ", 401},
		{"basic scheme", "", "Basic c2stdGVzdA==", 401},
		{"bare key", "", "sk-test", 401},
		{"any token", "", "Bearer anything", 200},
		{"lower-case scheme", "", "bearer anything", 200},
		{"wrong key", "sk-right", "Bearer sk-wrong", 401},
		{"right key", "sk-right", "Bearer sk-right", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, Config{Key: tt.key})
			for _, path := range []string{"/v1/user/balance", "/v1/user/account", "/v1/engines/list", t2iSDXL} {
				method, body := "GET", ""
				if path == t2iSDXL {
					method, body = "POST", okBody
				}
				req := request(method, path, body, "")
				req.Header.Del("Authorization")
				if tt.header != "-" {
					req.Header.Set("Authorization", tt.header)
				}
				rec := serve(s, req)
				if rec.Code != tt.status {
					t.Fatalf("%s %s: status = %d, want %d", method, path, rec.Code, tt.status)
				}
				if tt.status == 401 {
					e := errorOf(t, rec)
					if e.Name != "unauthorized" {
						t.Errorf("error name = %q, want unauthorized", e.Name)
					}
					if tt.key != "" && strings.Contains(e.Message, tt.key) {
						t.Errorf("401 message %q reveals the key", e.Message)
					}
				}
			}
		})
	}
	s := newServer(t, Config{})
	req := request("GET", "/v1/user/balance", "", "")
	req.Header.Del("Authorization")
	if e := errorOf(t, serve(s, req)); e.Message != "missing authorization header" {
		t.Errorf("missing header message = %q, want %q", e.Message, "missing authorization header")
	}
}

func TestJSONArtifacts(t *testing.T) {
	s := newServer(t, Config{})
	body := `{"text_prompts":[{"text":"a castle"}],"width":1216,"height":832,"samples":3,"seed":4294967294}`
	arts := artifactsOf(t, serve(s, request("POST", t2iSDXL, body, "application/json")))
	if len(arts) != 3 {
		t.Fatalf("got %d artifacts, want 3", len(arts))
	}
	wantSeeds := []uint32{4294967294, 4294967295, 0} // seed, seed+1, … as uint32
	seen := map[string]bool{}
	for i, a := range arts {
		if a.Seed != wantSeeds[i] || a.FinishReason != "SUCCESS" {
			t.Errorf("artifact %d = seed %d %s, want seed %d SUCCESS", i, a.Seed, a.FinishReason, wantSeeds[i])
		}
		data, err := base64.StdEncoding.DecodeString(a.Base64)
		if err != nil {
			t.Fatalf("artifact %d base64: %v", i, err)
		}
		checkPNG(t, data, 1216, 832)
		seen[a.Base64] = true
	}
	if len(seen) != 3 {
		t.Errorf("3 samples gave %d distinct images, want 3", len(seen))
	}
	// No Accept header means JSON too.
	if arts := artifactsOf(t, serve(s, request("POST", t2iSDXL, okBody, ""))); len(arts) != 1 {
		t.Errorf("default Accept: %d artifacts, want 1", len(arts))
	}
}

func TestPNGMode(t *testing.T) {
	s := newServer(t, Config{})
	rec := serve(s, request("POST", t2iSDXL, okBody, "image/png"))
	if rec.Code != 200 {
		t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
	}
	h := rec.Header()
	if h.Get("Content-Type") != "image/png" || h.Get("Finish-Reason") != "SUCCESS" || h.Get("Seed") != "1234" {
		t.Errorf("headers = %v, want image/png, Finish-Reason SUCCESS, Seed 1234", h)
	}
	if got, want := h.Get("Content-Length"), fmt.Sprint(rec.Body.Len()); got != want {
		t.Errorf("Content-Length = %s, want %s", got, want)
	}
	checkPNG(t, rec.Body.Bytes(), 1024, 1024)

	// The same request in JSON mode carries the same image.
	arts := artifactsOf(t, serve(s, request("POST", t2iSDXL, okBody, "application/json")))
	if arts[0].Base64 != base64.StdEncoding.EncodeToString(rec.Body.Bytes()) {
		t.Error("JSON artifact differs from the PNG answer to the same request")
	}
}

func TestDeterminism(t *testing.T) {
	run := func(seed int64, body string) []artifact {
		s := newServer(t, Config{Seed: seed})
		return artifactsOf(t, serve(s, request("POST", t2iSDXL, body, "")))
	}
	fixed := `{"text_prompts":[{"text":"a mug"}],"seed":77,"samples":2}`
	a, b := run(1, fixed), run(2, fixed)
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("fixed seed: artifact %d differs between servers", i)
		}
	}
	other := run(1, `{"text_prompts":[{"text":"a cup"}],"seed":77,"samples":2}`)
	if other[0].Base64 == a[0].Base64 {
		t.Error("different prompts gave the same image")
	}

	random := `{"text_prompts":[{"text":"a mug"}],"samples":4}`
	r1, r2, r3 := run(5, random), run(5, random), run(6, random)
	for i := range r1 {
		if r1[i].Seed == 0 {
			t.Errorf("random seed %d is 0", i)
		}
		if r1[i] != r2[i] {
			t.Errorf("server seed 5 twice: artifact %d differs", i)
		}
	}
	if r1[0].Seed == r1[1].Seed || r1[0].Seed == r3[0].Seed {
		t.Errorf("random seeds repeat: %d %d, other server %d", r1[0].Seed, r1[1].Seed, r3[0].Seed)
	}
}

func TestFilterWords(t *testing.T) {
	s := newServer(t, Config{FilterWords: []string{"Castle"}})
	tests := []struct {
		name, body string
		filtered   bool
	}{
		{"clean", `{"text_prompts":[{"text":"a house"}],"seed":9}`, false},
		{"word in prompt", `{"text_prompts":[{"text":"A CASTLE on a hill"}],"seed":9}`, true},
		{"word in negative prompt", `{"text_prompts":[{"text":"a house"},{"text":"castles","weight":-1}],"seed":9}`, true},
	}
	var clean string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arts := artifactsOf(t, serve(s, request("POST", t2iSDXL, tt.body, "")))
			want := map[bool]string{false: "SUCCESS", true: "CONTENT_FILTERED"}[tt.filtered]
			if arts[0].FinishReason != want {
				t.Errorf("finishReason = %s, want %s", arts[0].FinishReason, want)
			}
			if !tt.filtered {
				clean = arts[0].Base64
			} else if arts[0].Base64 == clean {
				t.Error("filtered image equals the clean one")
			}
			rec := serve(s, request("POST", t2iSDXL, tt.body, "image/png"))
			if got := rec.Header().Get("Finish-Reason"); got != want {
				t.Errorf("PNG Finish-Reason = %s, want %s", got, want)
			}
			checkPNG(t, rec.Body.Bytes(), 1024, 1024)
		})
	}
	if st := s.Stats(); st.Filtered != 4 || st.Images != 6 {
		t.Errorf("Stats = %+v, want 4 filtered of 6 images", st)
	}
}

func TestRateLimit(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	s := newServer(t, Config{RateLimit: 3, RateWindow: time.Second, Lockout: 5 * time.Second, Now: clock})
	get := func(key string) *httptest.ResponseRecorder {
		req := request("GET", "/v1/user/balance", "", "")
		req.Header.Set("Authorization", "Bearer "+key)
		return serve(s, req)
	}
	steps := []struct {
		advance time.Duration
		key     string
		status  int
	}{
		{0, "a", 200},
		{400 * time.Millisecond, "a", 200},
		{400 * time.Millisecond, "a", 200}, // t=0.8s: 3 in the window
		{100 * time.Millisecond, "b", 200}, // other keys have their own window
		{50 * time.Millisecond, "a", 429},  // t=0.95s: the 4th in 1s; locked out until 5.95s
		{time.Second, "a", 429},
		{3999 * time.Millisecond, "a", 429}, // t=5.949s
		{time.Millisecond, "a", 200},        // t=5.95s: lock-out over, window empty
		{500 * time.Millisecond, "a", 200},
		{500 * time.Millisecond, "a", 200}, // t=6.95s: the 5.95s request just left the window
		{0, "a", 200},                      // 3 in (5.95s, 6.95s]
		{0, "a", 429},
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		rec := get(st.key)
		if rec.Code != st.status {
			t.Fatalf("step %d (key %s): status = %d, want %d", i, st.key, rec.Code, st.status)
		}
		if rec.Code == 429 {
			e := errorOf(t, rec)
			want := "You have exceeded the rate limit of 3 requests within a 1 second period, and have been timed out for 5 seconds."
			if e.Name != "rate_limit_exceeded" || e.Message != want {
				t.Errorf("429 body = %+v, want rate_limit_exceeded %q", e, want)
			}
			if ra := rec.Header().Get("Retry-After"); ra != "" {
				t.Errorf("Retry-After = %q, want none by default", ra)
			}
		}
	}
	if got := s.Stats().RateLimited; got != 4 {
		t.Errorf("Stats().RateLimited = %d, want 4", got)
	}
}

func TestRateLimitDefaultsAndRetryAfter(t *testing.T) {
	now := time.Unix(0, 0)
	s := newServer(t, Config{RetryAfter: true, Now: func() time.Time { return now }})
	for i := range 150 {
		if rec := serve(s, request("GET", "/v1/engines/list", "", "")); rec.Code != 200 {
			t.Fatalf("request %d: status %d, want 200", i+1, rec.Code)
		}
	}
	rec := serve(s, request("GET", "/v1/engines/list", "", ""))
	e := errorOf(t, rec)
	want := "You have exceeded the rate limit of 150 requests within a 10 second period, and have been timed out for 60 seconds."
	if rec.Code != 429 || e.Message != want {
		t.Errorf("151st request = %d %q, want 429 %q", rec.Code, e.Message, want)
	}
	if got := rec.Header().Get("Retry-After"); got != "60" {
		t.Errorf("Retry-After = %q, want 60", got)
	}
	now = now.Add(59*time.Second + time.Millisecond)
	if got := serve(s, request("GET", "/v1/engines/list", "", "")).Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After after 59.001s = %q, want 1", got)
	}
}

func TestBalance(t *testing.T) {
	var priced []string
	pricer := pricer{image: func(e string, w, h, steps int) (cost.Credits, error) {
		priced = append(priced, fmt.Sprintf("%s %dx%d %d", e, w, h, steps))
		if e != sdxl {
			return 0, errors.New("no price for " + e)
		}
		return 2*cost.Credit + 500_000, nil // 2.5 credits per image
	}}
	s := newServer(t, Config{Pricer: pricer, Balance: 10 * cost.Credit})
	balance := func() string {
		rec := serve(s, request("GET", "/v1/user/balance", "", ""))
		if rec.Code != 200 {
			t.Fatalf("balance status = %d", rec.Code)
		}
		return strings.TrimSpace(rec.Body.String())
	}
	gen := func(samples int) *httptest.ResponseRecorder {
		body := fmt.Sprintf(`{"text_prompts":[{"text":"x"}],"samples":%d,"steps":40}`, samples)
		return serve(s, request("POST", t2iSDXL, body, ""))
	}
	if got := balance(); got != `{"credits":10.0}` {
		t.Errorf("starting balance = %s, want {\"credits\":10.0}", got)
	}
	if rec := gen(3); rec.Code != 200 {
		t.Fatalf("3 samples: status %d", rec.Code)
	}
	if got := balance(); got != `{"credits":2.5}` {
		t.Errorf("balance after 3 images = %s, want 2.5", got)
	}
	rec := gen(2) // costs 5, 2.5 left
	if e := errorOf(t, rec); rec.Code != 402 || e.Name != "insufficient_balance" {
		t.Errorf("over balance = %d %+v, want 402 insufficient_balance", rec.Code, e)
	}
	if rec := gen(1); rec.Code != 200 {
		t.Errorf("exactly the balance: status %d, want 200", rec.Code)
	}
	if got := balance(); got != `{"credits":0.0}` {
		t.Errorf("final balance = %s, want 0.0", got)
	}
	if rec := gen(1); rec.Code != 402 {
		t.Errorf("empty balance: status %d, want 402", rec.Code)
	}
	if want := sdxl + " 1024x1024 40"; priced[0] != want {
		t.Errorf("priced %q, want %q", priced[0], want)
	}
	rec = serve(s, request("POST", "/v1/generation/stable-diffusion-v1-5/text-to-image", `{"text_prompts":[{"text":"x"}]}`, ""))
	if e := errorOf(t, rec); rec.Code != 500 || e.Name != "server_error" {
		t.Errorf("unpriceable engine = %d %+v, want 500 server_error", rec.Code, e)
	}
	st := s.Stats()
	if st.Charged != 10*cost.Credit || st.Balance != 0 || st.Images != 4 || st.Generations != 2 {
		t.Errorf("Stats = %+v, want 10 credits charged for 4 images in 2 generations", st)
	}
}

func TestDefaultPriceSheet(t *testing.T) {
	sheet, err := cost.LookupSheet(cost.DefaultSheet)
	if err != nil {
		t.Fatal(err)
	}
	price, err := sheet.ImagePrice(sdxl, 1216, 832, 45)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Config{})
	body := `{"text_prompts":[{"text":"x"}],"width":1216,"height":832,"steps":45,"samples":3}`
	if rec := serve(s, request("POST", t2iSDXL, body, "")); rec.Code != 200 {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if got, want := s.Stats().Balance, DefaultBalance-3*price; got != want || price == 0 {
		t.Errorf("balance after 3 images at %v = %v, want %v", price, got, want)
	}
}

func TestEmptyAndDefaultBalance(t *testing.T) {
	for _, tt := range []struct {
		balance cost.Credits
		want    cost.Credits
	}{{0, DefaultBalance}, {-1, 0}, {5, 5}} {
		if got := newServer(t, Config{Balance: tt.balance}).Stats().Balance; got != tt.want {
			t.Errorf("Config{Balance: %v}: balance %v, want %v", tt.balance, got, tt.want)
		}
	}
}

func TestConcurrentSpendingNeverOverdraws(t *testing.T) {
	pricer := flat(cost.Credit)
	s := newServer(t, Config{Pricer: pricer, Balance: 20 * cost.Credit, RateLimit: -1})
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			rec := serve(s, request("POST", "/v1/generation/stable-diffusion-v1-6/text-to-image", `{"text_prompts":[{"text":"x"}],"width":320,"height":320}`, "image/png"))
			mu.Lock()
			codes[rec.Code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[200] != 20 || codes[402] != 20 {
		t.Errorf("40 requests for 20 credits: %v, want 20×200 and 20×402", codes)
	}
	if st := s.Stats(); st.Balance != 0 || st.Requests != 40 {
		t.Errorf("Stats = %+v, want balance 0 after 40 requests", st)
	}
}

func TestFailInjection(t *testing.T) {
	pricer := flat(cost.Credit)
	s := newServer(t, Config{Pricer: pricer, FailRate: 1})
	rec := serve(s, request("POST", t2iSDXL, okBody, ""))
	e := errorOf(t, rec)
	if rec.Code != 500 || e.Name != "server_error" || e.Message != "An unexpected server error occurred, please try again." {
		t.Errorf("FailRate 1: %d %+v, want 500 server_error", rec.Code, e)
	}
	if st := s.Stats(); st.Balance != DefaultBalance || st.Failed != 1 {
		t.Errorf("Stats = %+v, want the failure refunded and counted", st)
	}

	// A fraction fails, the same requests for the same Seed.
	outcomes := func(seed int64) string {
		s := newServer(t, Config{FailRate: 0.3, Seed: seed, RateLimit: -1})
		var b strings.Builder
		for range 100 {
			if serve(s, request("POST", t2iSDXL, okBody, "image/png")).Code == 500 {
				b.WriteByte('F')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	a, b, c := outcomes(3), outcomes(3), outcomes(4)
	if fails := strings.Count(a, "F"); fails < 15 || fails > 45 {
		t.Errorf("FailRate 0.3: %d of 100 failed (%s)", fails, a)
	}
	if a != b || a == c {
		t.Errorf("outcomes: seed 3 %s, again %s, seed 4 %s; want equal for equal seeds only", a, b, c)
	}
}

func TestDropInjection(t *testing.T) {
	pricer := flat(cost.Credit)
	s := newServer(t, Config{Pricer: pricer, DropRate: 1})
	ts := httptest.NewServer(s)
	defer ts.Close()
	req, err := http.NewRequestWithContext(t.Context(), "POST", ts.URL+t2iSDXL, strings.NewReader(okBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer sk-test")
	req.Header.Set("Content-Type", "application/json")
	resp, err := ts.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request answered %s, want a connection error", resp.Status)
	}
	if st := s.Stats(); st.Dropped != 1 || st.Charged != cost.Credit {
		t.Errorf("Stats = %+v, want 1 dropped and charged", st)
	}
	// Other endpoints are never dropped.
	req, _ = http.NewRequestWithContext(t.Context(), "GET", ts.URL+"/v1/user/balance", nil)
	req.Header.Set("Authorization", "Bearer sk-test")
	resp, err = ts.Client().Do(req)
	if err != nil {
		t.Fatalf("balance after drop: %v", err)
	}
	resp.Body.Close()
}

func TestLatency(t *testing.T) {
	var slept []time.Duration
	sleep := func(ctx context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}
	s := newServer(t, Config{Latency: Latency{Min: time.Second, Max: 5 * time.Second}, Sleep: sleep, RateLimit: -1})
	for range 50 {
		serve(s, request("POST", t2iSDXL, okBody, "image/png"))
	}
	distinct := map[time.Duration]bool{}
	for _, d := range slept {
		if d < time.Second || d > 5*time.Second {
			t.Errorf("slept %v, want 1s–5s", d)
		}
		distinct[d] = true
	}
	if len(slept) != 50 || len(distinct) < 40 {
		t.Errorf("slept %d times with %d distinct delays, want 50 uniform ones", len(slept), len(distinct))
	}

	// A client that leaves during the delay is not charged.
	pricer := flat(cost.Credit)
	cancelled := func(ctx context.Context, d time.Duration) error { return context.Canceled }
	s = newServer(t, Config{Latency: Latency{Min: time.Second, Max: time.Second}, Sleep: cancelled, Pricer: pricer})
	serve(s, request("POST", t2iSDXL, okBody, ""))
	if st := s.Stats(); st.Balance != DefaultBalance || st.Generations != 0 {
		t.Errorf("Stats after a cancelled request = %+v, want no charge and no generation", st)
	}
}

func TestRealSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if err := sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("sleep(cancelled, 1h) = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("sleep took %v after cancel", d)
	}
}

func TestParseLatency(t *testing.T) {
	tests := []struct {
		in      string
		want    Latency
		wantErr bool
	}{
		{"", Latency{}, false},
		{"0", Latency{}, false},
		{"2s", Latency{2 * time.Second, 2 * time.Second}, false},
		{"1s-5s", Latency{time.Second, 5 * time.Second}, false},
		{" 250ms - 1.5s ", Latency{250 * time.Millisecond, 1500 * time.Millisecond}, false},
		{"5s-1s", Latency{}, true},
		{"fast", Latency{}, true},
		{"1s-", Latency{}, true},
		{"-1s", Latency{}, true},
	}
	for _, tt := range tests {
		got, err := ParseLatency(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseLatency(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil {
			if back, _ := ParseLatency(got.String()); back != got {
				t.Errorf("ParseLatency(%q.String()=%q) = %v, want %v", tt.in, got.String(), back, got)
			}
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{FailRate: -0.1}, {FailRate: 1.1}, {DropRate: 2},
		{Latency: Latency{Min: 2 * time.Second, Max: time.Second}},
		{RateWindow: -time.Second}, {Lockout: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

func TestEnginesAndAccount(t *testing.T) {
	s := newServer(t, Config{})
	rec := serve(s, request("GET", "/v1/engines/list", "", ""))
	var list []engineBody
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatalf("engines/list is not a bare array: %v (%s)", err, rec.Body)
	}
	all := engine.All()
	if len(list) != len(all) {
		t.Fatalf("engines/list has %d engines, want %d", len(list), len(all))
	}
	for i, e := range list {
		if e.ID != all[i].ID || e.Name != all[i].Name || e.Type != "PICTURE" || e.Description == "" {
			t.Errorf("engine %d = %+v, want id %s, name %s, type PICTURE", i, e, all[i].ID, all[i].Name)
		}
	}
	rec = serve(s, request("GET", "/v1/user/account", "", ""))
	var acct accountBody
	if err := json.Unmarshal(rec.Body.Bytes(), &acct); err != nil || acct.ID == "" || acct.Email == "" || len(acct.Organizations) != 1 {
		t.Errorf("account = %s (%v), want id, email and one organization", rec.Body, err)
	}
}

func TestErrorIDsUnique(t *testing.T) {
	s := newServer(t, Config{})
	seen := map[string]bool{}
	for range 20 {
		req := request("GET", "/v1/user/balance", "", "")
		req.Header.Del("Authorization")
		id := errorOf(t, serve(s, req)).ID
		if seen[id] || len(id) != 36 {
			t.Errorf("error id %q repeated or not UUID-shaped", id)
		}
		seen[id] = true
	}
}

func TestStatsCounts(t *testing.T) {
	now := time.Unix(0, 0)
	s := newServer(t, Config{RateLimit: 4, Pricer: free, Now: func() time.Time { return now }})
	serve(s, request("POST", t2iSDXL, okBody, ""))                                        // 200
	serve(s, request("POST", t2iSDXL, `{"text_prompts":[]}`, ""))                         // 400
	serve(s, request("POST", "/v1/generation/nope/text-to-image", okBody, ""))            // 404
	serve(s, request("POST", t2iSDXL, `{"text_prompts":[{"text":"x"}],"samples":2}`, "")) // 200, 2 images
	serve(s, request("GET", "/v1/user/balance", "", ""))                                  // 429
	req := request("GET", "/v1/user/balance", "", "")
	req.Header.Del("Authorization")
	serve(s, req) // 401
	want := Stats{Requests: 6, Generations: 2, Images: 3, Rejected: 3, RateLimited: 1, Balance: DefaultBalance}
	if got := s.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// BenchmarkTextToImage measures whole requests through the handler (no
// network): one 1024×1024 image per request.
func BenchmarkTextToImage(b *testing.B) {
	for _, accept := range []string{"image/png", "application/json"} {
		b.Run(strings.ReplaceAll(accept, "/", "-"), func(b *testing.B) {
			s, err := New(Config{RateLimit: -1})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				body := fmt.Sprintf(`{"text_prompts":[{"text":"a lighthouse"}],"seed":%d}`, i+1)
				rec := serve(s, request("POST", t2iSDXL, body, accept))
				if rec.Code != 200 {
					b.Fatalf("status %d", rec.Code)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// BenchmarkTextToImageHTTP measures whole requests over loopback HTTP with
// parallel clients: one 1024×1024 PNG per request.
func BenchmarkTextToImageHTTP(b *testing.B) {
	s, err := New(Config{RateLimit: -1, Pricer: free})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	client := ts.Client()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for i := 1; pb.Next(); i++ {
			body := fmt.Sprintf(`{"text_prompts":[{"text":"a lighthouse"}],"seed":%d}`, i)
			req, err := http.NewRequest("POST", ts.URL+t2iSDXL, strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer sk-bench")
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "image/png")
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
