package sandbox

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/imagefile"
)

// asyncOps returns the async operations of the catalogue.
func asyncOps(t *testing.T) []*catalog.Operation {
	t.Helper()
	var ops []*catalog.Operation
	for _, op := range allOps() {
		if op.Async {
			ops = append(ops, op)
		}
	}
	if len(ops) == 0 {
		t.Fatal("the catalogue has no async service")
	}
	return ops
}

const legacyPrefix = "/v2beta/stable-image/" + legacyResultService + "/result/"

// resultPaths returns the paths that answer a generation of op, and those
// that must not.
func resultPaths(op *catalog.Operation, id string) (answer, notFound []string) {
	answer = []string{"/v2beta/results/" + id}
	if op.Service == legacyResultService {
		return append(answer, legacyPrefix+id), nil
	}
	return answer, []string{legacyPrefix + id}
}

// checkNotFound checks a 404 generation_not_found answer.
func checkNotFound(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != 404 {
		t.Fatalf("status %d: %s, want 404", rec.Code, rec.Body)
	}
	want := []string{"id: the generation either does not exist or has expired."}
	if e := stableErrorOf(t, rec); e.Name != "generation_not_found" || !slices.Equal(e.Errors, want) {
		t.Errorf("error %s %q, want generation_not_found %q", e.Name, e.Errors, want)
	}
}

// checkInProgress checks a 202 answer for the generation id.
func checkInProgress(t *testing.T, rec *httptest.ResponseRecorder, id string) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); rec.Code != 202 || ct != "application/json" {
		t.Fatalf("answer %d %s: %s, want 202 application/json", rec.Code, ct, rec.Body)
	}
	var b progressBody
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.ID != id || b.Status != "in-progress" {
		t.Errorf("202 body %+v (%v), want {id: %s, status: in-progress}", b, err, id)
	}
	if !hexID.MatchString(rec.Header().Get("X-Request-Id")) {
		t.Errorf("x-request-id = %q, want 32 hex digits", rec.Header().Get("X-Request-Id"))
	}
}

// TestAsyncLifecycle follows a generation of every async service: the
// submit's id, 202 on every result path until the delay is over, 404 for
// another key, another id and the path that does not serve the service,
// then the same image, raw and as JSON, on every path, charged once, until
// the result's life is over.
func TestAsyncLifecycle(t *testing.T) {
	for _, op := range asyncOps(t) {
		t.Run(op.Service, func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			price := 7 * cost.Credit
			s := newServer(t, Config{
				Pricer: flat(price), RateLimit: -1, AsyncDelay: 30 * time.Second, ResultLife: time.Hour,
				Now: func() time.Time { return now },
			})
			fields := append(validForm(t, op), fv("output_format", "webp"), fv("seed", "12"))
			req := stablePost(t, op.Service, fields, "image/*")
			req.Header.Set("Authorization", "Bearer sk-alice")
			id := submitted(t, serve(s, req))
			paths, elsewhere := resultPaths(op, id)

			inProgress := func() {
				t.Helper()
				for _, p := range paths {
					checkInProgress(t, poll(t, s, p, "image/*", "sk-alice"), id)
				}
			}
			notFound := func() {
				t.Helper()
				for _, p := range paths {
					checkNotFound(t, poll(t, s, p, "image/*", "sk-bob")) // another key
				}
				for _, p := range elsewhere {
					checkNotFound(t, poll(t, s, p, "image/*", "sk-alice"))
				}
				checkNotFound(t, poll(t, s, "/v2beta/results/"+strings.Repeat("0", 64), "", "sk-alice"))
				checkNotFound(t, poll(t, s, "/v2beta/results/"+id[:63], "", "sk-alice"))
			}
			inProgress()
			notFound()
			now = now.Add(30*time.Second - 1)
			inProgress()

			now = now.Add(1)
			want, _ := op.OutputSize(formValue(fields), catalog.Size{W: 96, H: 64})
			var image []byte
			done := func() {
				t.Helper()
				for _, p := range paths {
					rec := poll(t, s, p, "image/*", "sk-alice")
					h := rec.Header()
					if rec.Code != 200 || h.Get("Content-Type") != "image/webp" || h.Get("Finish-Reason") != "SUCCESS" || h.Get("Seed") != "12" {
						t.Fatalf("%s: %d %v, want 200 image/webp, finish-reason SUCCESS, seed 12", p, rec.Code, h)
					}
					if image == nil {
						image = rec.Body.Bytes()
						info, err := imagefile.Read(bytes.NewReader(image))
						if err != nil || info.Format != imagefile.WebP || info.Width != want.W || info.Height != want.H {
							t.Errorf("result %+v (%v), want a %v WebP", info, err, want)
						}
					} else if !bytes.Equal(rec.Body.Bytes(), image) {
						t.Errorf("%s: another image than the first poll's", p)
					}
					rec = poll(t, s, p, "application/json", "sk-alice")
					var b stableJSON
					if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || rec.Code != 200 ||
						rec.Header().Get("Content-Type") != `application/json; type="image/webp"` || b.Seed != 12 || b.FinishReason != "SUCCESS" {
						t.Fatalf("%s as JSON: %d %v %.100s (%v)", p, rec.Code, rec.Header(), rec.Body, err)
					}
					if got, _ := base64.StdEncoding.DecodeString(b.Image); !bytes.Equal(got, image) {
						t.Errorf("%s as JSON: another image than the raw answer's", p)
					}
				}
			}
			done()
			notFound()
			now = now.Add(time.Hour - 1)
			done()

			now = now.Add(1)
			for _, p := range paths {
				checkNotFound(t, poll(t, s, p, "image/*", "sk-alice"))
			}
			st := s.Stats()
			if st.Charged != price || st.Balance != DefaultBalance-price || st.Generations != 1 || st.Submitted != 1 {
				t.Errorf("Stats = %+v, want one generation charged once (%v)", st, price)
			}
		})
	}
}

// TestAsyncAccept sends a poll of a done generation with the accept
// headers clients send.
func TestAsyncAccept(t *testing.T) {
	s := newServer(t, Config{Pricer: free, RateLimit: -1, AsyncDelay: -1})
	op, _ := catalog.Lookup(legacyResultService)
	submit := func(format string) string {
		return submitted(t, serve(s, stablePost(t, op.Service, append(validForm(t, op), fv("output_format", format)), "")))
	}
	png, webp := submit("png"), submit("webp")
	tests := []struct {
		id, accept string
		status     int
		ctype      string
	}{
		{png, "", 200, "image/png"},
		{png, "image/*", 200, "image/png"},
		{png, "*/*", 200, "image/png"},
		{png, "image/png", 200, "image/png"},
		{webp, "image/webp", 200, "image/webp"},
		{png, "application/json", 200, `application/json; type="image/png"`},
		{png, "application/json; type=image/png", 200, `application/json; type="image/png"`},
		{png, `application/json; type="image/png"`, 200, `application/json; type="image/png"`},
		{webp, "application/json; type=image/webp", 200, `application/json; type="image/webp"`},
		{png, "text/html, image/*;q=0.8", 200, "image/png"},
		{png, "image/jpeg", 400, ""},
		{webp, "image/png", 400, ""},
		{png, "text/html", 400, ""},
	}
	for _, tt := range tests {
		for _, prefix := range []string{"/v2beta/results/", legacyPrefix} {
			rec := poll(t, s, prefix+tt.id, tt.accept, "sk-test")
			if rec.Code != tt.status {
				t.Errorf("%s with accept %q: status %d, want %d", prefix, tt.accept, rec.Code, tt.status)
				continue
			}
			if tt.status == 400 {
				if e := stableErrorOf(t, rec); e.Name != "bad_request" || !names(e, "accept") {
					t.Errorf("accept %q: %s %q, want bad_request naming accept", tt.accept, e.Name, e.Errors)
				}
			} else if ct := rec.Header().Get("Content-Type"); ct != tt.ctype {
				t.Errorf("%s with accept %q: Content-Type %q, want %q", prefix, tt.accept, ct, tt.ctype)
			}
		}
	}
}

// TestAsyncSubmit checks the submit's answer whatever its accept header
// (the spec gives the async submits none: they always answer JSON), and
// that validation still comes before authentication.
func TestAsyncSubmit(t *testing.T) {
	s := newServer(t, Config{Key: "sk-right", Pricer: free, RateLimit: -1})
	for _, op := range asyncOps(t) {
		for _, accept := range []string{"", "application/json", "image/*", "image/jpeg", "text/html"} {
			req := stablePost(t, op.Service, validForm(t, op), accept)
			req.Header.Set("Authorization", "Bearer sk-right")
			if rec := serve(s, req); rec.Code != 200 || !hexID.MatchString(rec.Header().Get("X-Request-Id")) {
				t.Errorf("%s with accept %q: %d %v, want 200 and a request id", op.Service, accept, rec.Code, rec.Header())
			} else {
				submitted(t, rec)
			}
		}
		bad := append(validForm(t, op), fv("seed", "-1"))
		req := stablePost(t, op.Service, bad, "")
		req.Header.Set("Authorization", "Bearer sk-wrong")
		if rec := serve(s, req); rec.Code != 400 || !names(stableErrorOf(t, rec), "seed") {
			t.Errorf("%s: a bad seed with a wrong key: %d %s, want 400 about seed", op.Service, rec.Code, rec.Body)
		}
		req = stablePost(t, op.Service, validForm(t, op), "")
		req.Header.Set("Authorization", "Bearer sk-wrong")
		if rec := serve(s, req); rec.Code != 401 {
			t.Errorf("%s: a wrong key: %d, want 401", op.Service, rec.Code)
		}
	}
	// With a Key, any other token is refused before the id is looked up.
	if rec := poll(t, s, "/v2beta/results/"+strings.Repeat("a", 64), "", "sk-wrong"); rec.Code != 401 {
		t.Errorf("poll with a wrong key: %d, want 401", rec.Code)
	}
}

// TestAsyncCharging checks that an async generation is charged once, at
// the submit, and that a refused submit is not charged.
func TestAsyncCharging(t *testing.T) {
	op, _ := catalog.Lookup(legacyResultService)
	price := 60 * cost.Credit
	s := newServer(t, Config{
		Key: "sk-test", Pricer: flat(price), Balance: 100 * cost.Credit, RateLimit: -1, AsyncDelay: -1,
		ModerateWords: []string{"forbidden"},
	})
	steps := []struct {
		name    string
		fields  []formField
		status  int
		balance cost.Credits // after the request
	}{
		{"invalid", append(validForm(t, op), fv("creativity", "0.9")), 400, 100 * cost.Credit},
		{"moderated", replace(validForm(t, op), "prompt", "something forbidden"), 403, 100 * cost.Credit},
		{"accepted", validForm(t, op), 200, 40 * cost.Credit},
		{"too poor", validForm(t, op), 402, 40 * cost.Credit},
	}
	var id string
	for _, st := range steps {
		rec := serve(s, stablePost(t, op.Service, st.fields, ""))
		if rec.Code != st.status {
			t.Fatalf("%s: status %d, want %d: %s", st.name, rec.Code, st.status, rec.Body)
		}
		if st.status == 200 {
			id = submitted(t, rec)
		}
		if got := s.Stats().Balance; got != st.balance {
			t.Errorf("%s: balance %v, want %v", st.name, got, st.balance)
		}
	}
	for range 3 {
		if rec := poll(t, s, "/v2beta/results/"+id, "", "sk-test"); rec.Code != 200 {
			t.Fatalf("poll: %d %s", rec.Code, rec.Body)
		}
	}
	want := Stats{Requests: 7, Generations: 1, Submitted: 1, Polls: 3, Images: 3, Rejected: 2, Moderated: 1,
		Charged: price, Balance: 40 * cost.Credit}
	if got := s.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}

	// An injected failure is not charged and leaves no generation; a
	// dropped answer is charged, as the work was done.
	s = newServer(t, Config{Pricer: flat(price), FailRate: 1})
	rec := serve(s, stablePost(t, op.Service, validForm(t, op), ""))
	if e := stableErrorOf(t, rec); rec.Code != 500 || e.Name != "internal_error" {
		t.Errorf("FailRate 1: %d %s, want 500 internal_error", rec.Code, e.Name)
	}
	if st := s.Stats(); st.Charged != 0 || st.Submitted != 0 || len(s.async.byID) != 0 {
		t.Errorf("after a failed submit: Stats %+v, %d generations; want nothing charged or kept", st, len(s.async.byID))
	}
	s = newServer(t, Config{Pricer: flat(price), DropRate: 1})
	ts := httptest.NewServer(s)
	defer ts.Close()
	body, contentType := multipartBody(t, validForm(t, op))
	req := httptest.NewRequest("POST", ts.URL+op.Path(), bytes.NewReader(body))
	req.RequestURI = ""
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer sk-test")
	if resp, err := ts.Client().Do(req.WithContext(t.Context())); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped submit answered %s", resp.Status)
	}
	if st := s.Stats(); st.Dropped != 1 || st.Charged != price || st.Submitted != 0 {
		t.Errorf("Stats = %+v, want 1 dropped, charged, and no id given out", st)
	}
}

// TestAsyncLatency checks that the latency knob delays the submit's answer
// and not the polls.
func TestAsyncLatency(t *testing.T) {
	var slept []time.Duration
	s := newServer(t, Config{Pricer: free, AsyncDelay: -1, Latency: Latency{Min: time.Second, Max: time.Second},
		Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }})
	op, _ := catalog.Lookup(legacyResultService)
	id := submitted(t, serve(s, stablePost(t, op.Service, validForm(t, op), "")))
	if rec := poll(t, s, "/v2beta/results/"+id, "", "sk-test"); rec.Code != 200 {
		t.Fatalf("poll: %d", rec.Code)
	}
	if !slices.Equal(slept, []time.Duration{time.Second}) {
		t.Errorf("slept %v, want one 1s delay, for the submit", slept)
	}
}

// TestAsyncPollsShareRateLimit checks that polls count against the key's
// rate limit with v1 and Stable Image requests, and are refused during the
// lock-out.
func TestAsyncPollsShareRateLimit(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newServer(t, Config{Pricer: free, RateLimit: 3, RateWindow: time.Second, Lockout: 5 * time.Second, AsyncDelay: -1,
		Now: func() time.Time { return now }})
	op, _ := catalog.Lookup(legacyResultService)
	if rec := serve(s, request("GET", "/v1/user/balance", "", "")); rec.Code != 200 {
		t.Fatalf("v1 balance: %d", rec.Code)
	}
	id := submitted(t, serve(s, stablePost(t, op.Service, validForm(t, op), "")))
	if rec := poll(t, s, "/v2beta/results/"+id, "", "sk-test"); rec.Code != 200 {
		t.Fatalf("first poll: %d", rec.Code)
	}
	for _, path := range []string{"/v2beta/results/" + id, legacyPrefix + id} {
		rec := poll(t, s, path, "", "sk-test")
		if e := stableErrorOf(t, rec); rec.Code != 429 || e.Name != "rate_limit_exceeded" {
			t.Errorf("%s, 4th request in the window: %d %s, want 429", path, rec.Code, e.Name)
		}
	}
	if rec := poll(t, s, "/v2beta/results/"+id, "", "sk-other"); rec.Code != 404 {
		t.Errorf("another key, under its own limit: %d, want 404", rec.Code)
	}
	now = now.Add(5 * time.Second)
	if rec := poll(t, s, "/v2beta/results/"+id, "", "sk-test"); rec.Code != 200 {
		t.Errorf("after the lock-out: %d, want 200", rec.Code)
	}
	if st := s.Stats(); st.Polls != 5 || st.RateLimited != 2 || st.Images != 2 {
		t.Errorf("Stats = %+v, want 5 polls, 2 rate-limited, 2 images", st)
	}
}

// TestAsyncDefaults checks the defaults of AsyncDelay and ResultLife, a
// negative AsyncDelay, and that New refuses a negative ResultLife.
func TestAsyncDefaults(t *testing.T) {
	op, _ := catalog.Lookup(legacyResultService)
	start := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name  string
		delay time.Duration
		at    []time.Duration // poll times after the submit
		want  []int
	}{
		{"default", 0, []time.Duration{0, DefaultAsyncDelay - 1, DefaultAsyncDelay, DefaultAsyncDelay + DefaultResultLife - 1, DefaultAsyncDelay + DefaultResultLife},
			[]int{202, 202, 200, 200, 404}},
		{"at once", -1, []time.Duration{0, DefaultResultLife - 1, DefaultResultLife}, []int{200, 200, 404}},
		{"a minute", time.Minute, []time.Duration{time.Minute - 1, time.Minute}, []int{202, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := start
			s := newServer(t, Config{Pricer: free, RateLimit: -1, AsyncDelay: tt.delay, Now: func() time.Time { return now }})
			id := submitted(t, serve(s, stablePost(t, op.Service, validForm(t, op), "")))
			for i, at := range tt.at {
				now = start.Add(at)
				if rec := poll(t, s, "/v2beta/results/"+id, "", "sk-test"); rec.Code != tt.want[i] {
					t.Errorf("poll %v after the submit: %d, want %d", at, rec.Code, tt.want[i])
				}
			}
		})
	}
	if _, err := New(Config{ResultLife: -time.Second}); err == nil {
		t.Error("New with a negative ResultLife: nil error")
	}
}

// TestAsyncForgetsExpired checks that expired generations are dropped from
// memory when the next one is submitted.
func TestAsyncForgetsExpired(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newServer(t, Config{Pricer: free, RateLimit: -1, AsyncDelay: time.Second, ResultLife: time.Minute, Now: func() time.Time { return now }})
	op, _ := catalog.Lookup(legacyResultService)
	submit := func() string { return submitted(t, serve(s, stablePost(t, op.Service, validForm(t, op), ""))) }
	first := submit()
	now = now.Add(30 * time.Second)
	second := submit()
	if first == second {
		t.Fatal("two submits got the same id")
	}
	now = now.Add(31 * time.Second) // the first expired, the second not
	third := submit()
	if _, ok := s.async.byID[first]; ok || len(s.async.byID) != 2 || !slices.Equal(s.async.order, []string{second, third}) {
		t.Errorf("kept %d generations (%v), want the second and third", len(s.async.byID), s.async.order)
	}
}

// TestAsyncIDsDeterministic checks that generation ids come from Seed.
func TestAsyncIDsDeterministic(t *testing.T) {
	op, _ := catalog.Lookup(legacyResultService)
	ids := func(seed int64) []string {
		s := newServer(t, Config{Pricer: free, Seed: seed})
		var out []string
		for range 2 {
			out = append(out, submitted(t, serve(s, stablePost(t, op.Service, validForm(t, op), ""))))
		}
		return out
	}
	a := ids(4)
	if !slices.Equal(a, ids(4)) || slices.Equal(a, ids(5)) || a[0] == a[1] {
		t.Errorf("ids %v: want the same for the same Seed, distinct otherwise", a)
	}
}
