// Package sandbox is a local, Stability-compatible API server: the v1
// text-to-image endpoints and every Stable Image (v2beta) service, with the
// same validation, error bodies, rate limit with lock-out and credit
// balance as the real API, answering with cheap, deterministic images, plus
// knobs for latency, failures, dropped connections, content filtering and
// content moderation.
//
// The v1 side follows the v1 spec (internal/prismtest, the 2025-02
// snapshot). The Stable Image side is derived from package catalog, so a
// service added there is served here without new code; it follows the
// September 2026 spec snapshot and what the live API did on 2026-09-22:
// validation runs before authentication, so a bad field with a bad key gets
// 400 rather than 401 (aself101/stability-ai-api docs/DECISIONS.md §4 @
// 08eea9e); each image input must be PNG, JPEG or WebP by its content and
// within its field's limits (catalog.Limits); output sizes are the live ones
// (docs/LIVE-BATTERY-2026-09-22.md @ 10fe5ea in the same repository), by
// catalog.Operation.OutputSize; and the async services answer with a
// generation id whose result is polled (async.go).
//
// One answer is the sandbox's own: neither spec documents a status for an
// account whose balance cannot pay for a request, so the sandbox answers 402
// Payment Required with the name "insufficient_balance" and a message that
// gives the price and the balance.
package sandbox

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/engine"
)

// Pricer prices what the sandbox charges for; *cost.Sheet satisfies it.
type Pricer interface {
	// ImagePrice is the price of one v1 image of width×height pixels at
	// the given steps on engine.
	ImagePrice(engine string, width, height, steps int) (cost.Credits, error)
	// ServicePrice is the price of one successful Stable Image result of
	// service (e.g. "generate/sd3") with model, the value of the service's
	// model field ("" for a service without one).
	ServicePrice(service, model string) (cost.Credits, error)
}

var _ Pricer = (*cost.Sheet)(nil)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultBalance    = 1_000_000 * cost.Credit // $10,000 worth of credits
	DefaultRateLimit  = 150                     // requests per window, per key
	DefaultRateWindow = 10 * time.Second
	DefaultLockout    = 60 * time.Second
)

// Config configures a Server. The zero value is a usable sandbox: any
// non-empty bearer token, the default price sheet, the real API's rate
// limit, no latency and no injected failures.
type Config struct {
	// Key is the bearer token every request must carry. "" accepts any
	// non-empty token; each distinct token then has its own rate limit.
	Key string

	// Pricer prices each image (a v1 request costs the image price times
	// samples; a Stable Image request costs its service price). Nil means
	// the sheet cost.LookupSheet(cost.DefaultSheet).
	Pricer Pricer

	// Balance is the account's starting balance. Zero means DefaultBalance;
	// a negative value means an empty account (0 credits).
	Balance cost.Credits

	// RateLimit is how many requests a key may make in any RateWindow, v1
	// and Stable Image requests and polls of async results together; zero
	// means DefaultRateLimit (150) and a negative value disables the limit.
	// The request that exceeds it gets 429 and locks the key out for
	// Lockout: every request meanwhile gets 429 too. A Stable Image request
	// refused by validation (400, 413) is answered before its key is looked
	// at and does not count.
	RateLimit int
	// RateWindow is the sliding window of the rate limit; zero means
	// DefaultRateWindow (10 s).
	RateWindow time.Duration
	// Lockout is how long a key that exceeded the limit is refused; zero
	// means DefaultLockout (60 s).
	Lockout time.Duration
	// RetryAfter adds a Retry-After header (whole seconds left of the
	// lock-out, rounded up) to 429 answers. The real API sends none.
	RetryAfter bool

	// Latency is the extra delay before each generation's answer (v1
	// text-to-image and Stable Image, an async service's submit included;
	// never a poll); the zero value adds none.
	Latency Latency
	// FailRate is the fraction (0–1) of valid, paid-for generations (async
	// submits included) answered 500 (v1 server_error, Stable Image
	// internal_error); they are not charged, and an async one is not kept.
	FailRate float64
	// DropRate is the fraction (0–1) of valid, paid-for generations (async
	// submits included) whose connection is closed without an answer after
	// the body was read. They are charged: the work was done, only the
	// answer (for an async submit, its id) was lost, which is what makes a
	// client's "outcome unknown" case real.
	DropRate float64
	// FilterWords are words (matched case-insensitively as substrings of any
	// prompt, negative ones included; of any text field of a Stable Image
	// request) that make every image of a request a blurred
	// CONTENT_FILTERED one. Filtered images are charged.
	FilterWords []string
	// ModerateWords are words, matched like FilterWords, that make the
	// content moderation refuse a Stable Image request: 403
	// content_moderation, not charged. Nil refuses nothing.
	ModerateWords []string

	// Seed seeds the random source behind failures, drops, latency, random
	// image seeds and error ids. A sequential client sees the same answers
	// for the same Seed.
	Seed int64

	// AsyncDelay is how long an async generation (upscale/creative,
	// edit/replace-background-and-relight) takes after its submit is
	// answered: until then polls get 202. Zero means DefaultAsyncDelay
	// (2 s); a negative value completes generations at once.
	AsyncDelay time.Duration
	// ResultLife is how long an async result can be fetched after it is
	// done, then polls get 404 generation_not_found. Zero means
	// DefaultResultLife (24 h, the API's).
	ResultLife time.Duration

	// Now is the clock of the rate limiter and of async generations
	// (completion and expiry); nil means time.Now.
	Now func() time.Time
	// Sleep waits out latency; it returns early with ctx's error when the
	// request is cancelled. Nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Log, when non-nil, gets one line per answered request (never the key).
	Log *slog.Logger
}

// Stats counts what a Server did since New. Counts are of requests unless
// the name says images.
type Stats struct {
	Requests    int          // every request received
	Generations int          // v1 text-to-image and Stable Image requests answered 200, async submits included
	Submitted   int          // async submits answered 200 {id}
	Polls       int          // result requests (GET of an async result on either path), whatever the answer
	InProgress  int          // result requests answered 202 in-progress
	Images      int          // images returned, filtered ones and async results fetched included
	Filtered    int          // images returned as CONTENT_FILTERED
	Rejected    int          // answered 4xx other than 429 and 403 content_moderation (400, 401, 402, 404 generation_not_found, 413, …)
	Moderated   int          // answered 403 content_moderation
	RateLimited int          // answered 429
	Failed      int          // answered 500: injected failures, and prices the Pricer could not give
	Dropped     int          // connections closed without an answer
	Charged     cost.Credits // credits taken from the balance
	Balance     cost.Credits // credits left
}

// Server is the sandbox API. It is an http.Handler and safe for concurrent
// use.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	filter   []string // lower-cased FilterWords
	moderate []string // lower-cased ModerateWords

	mu      sync.Mutex // guards everything below
	rng     *rand.Rand
	limiter limiter
	async   generations
	stats   Stats
}

// New returns a sandbox server configured by cfg, with defaults applied to
// its zero fields.
func New(cfg Config) (*Server, error) {
	if cfg.FailRate < 0 || cfg.FailRate > 1 {
		return nil, fmt.Errorf("sandbox: fail rate %v is not between 0 and 1", cfg.FailRate)
	}
	if cfg.DropRate < 0 || cfg.DropRate > 1 {
		return nil, fmt.Errorf("sandbox: drop rate %v is not between 0 and 1", cfg.DropRate)
	}
	if err := cfg.Latency.validate(); err != nil {
		return nil, fmt.Errorf("sandbox: latency: %w", err)
	}
	if cfg.RateWindow < 0 || cfg.Lockout < 0 {
		return nil, errors.New("sandbox: negative rate window or lock-out")
	}
	if cfg.ResultLife < 0 {
		return nil, errors.New("sandbox: negative result life")
	}
	switch {
	case cfg.Balance == 0:
		cfg.Balance = DefaultBalance
	case cfg.Balance < 0:
		cfg.Balance = 0
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateWindow == 0 {
		cfg.RateWindow = DefaultRateWindow
	}
	if cfg.Lockout == 0 {
		cfg.Lockout = DefaultLockout
	}
	if cfg.Pricer == nil {
		sheet, err := cost.LookupSheet(cost.DefaultSheet)
		if err != nil {
			return nil, fmt.Errorf("sandbox: default price sheet: %w", err)
		}
		cfg.Pricer = sheet
	}
	if cfg.AsyncDelay == 0 {
		cfg.AsyncDelay = DefaultAsyncDelay
	}
	if cfg.ResultLife == 0 {
		cfg.ResultLife = DefaultResultLife
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	s := &Server{
		cfg: cfg,
		mux: http.NewServeMux(),
		rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5a4db0c5)),
		limiter: limiter{
			limit:   cfg.RateLimit,
			window:  cfg.RateWindow,
			lockout: cfg.Lockout,
			keys:    map[string]*keyWindow{},
		},
		async: generations{byID: map[string]*pending{}},
	}
	s.filter = lowerWords(cfg.FilterWords)
	s.moderate = lowerWords(cfg.ModerateWords)
	s.stats.Balance = cfg.Balance
	// The v1 endpoints authenticate first; the Stable Image ones validate
	// first and authenticate in their handler.
	s.mux.HandleFunc("POST /v1/generation/{engine_id}/text-to-image", s.authorized(s.textToImage))
	s.mux.HandleFunc("GET /v1/user/balance", s.authorized(s.balance))
	s.mux.HandleFunc("GET /v1/user/account", s.authorized(s.account))
	s.mux.HandleFunc("GET /v1/engines/list", s.authorized(s.engines))
	for _, op := range catalog.All() {
		h, err := s.stableImage(&op)
		if err != nil {
			return nil, fmt.Errorf("sandbox: %s: %w", op.Service, err)
		}
		s.mux.HandleFunc("POST "+op.Path(), h)
	}
	s.mux.HandleFunc("GET /v2beta/results/{id}", s.pollResult(""))
	legacy, ok := catalog.Lookup(legacyResultService)
	if !ok || !legacy.Async {
		return nil, fmt.Errorf("sandbox: the catalogue has no async %s", legacyResultService)
	}
	s.mux.HandleFunc("GET "+legacy.Path()+"/result/{id}", s.pollResult(legacyResultService))
	s.mux.HandleFunc("/", s.authorized(s.notFound))
	return s, nil
}

func lowerWords(words []string) []string {
	var out []string
	for _, w := range words {
		if w = strings.ToLower(strings.TrimSpace(w)); w != "" {
			out = append(out, w)
		}
	}
	return out
}

// contains reports whether text contains any of the lower-cased words,
// ignoring case.
func contains(text string, words []string) bool {
	if len(words) == 0 {
		return false
	}
	lower := strings.ToLower(text)
	return slices.ContainsFunc(words, func(w string) bool { return strings.Contains(lower, w) })
}

// Stats returns a snapshot of the server's counters and balance.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// ServeHTTP counts the request and routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.Requests++
	s.mu.Unlock()
	s.mux.ServeHTTP(w, r)
}

// authorized wraps a handler that runs only for an authenticated request
// within the rate limit.
func (s *Server) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, aerr := s.authorize(w, r); aerr != nil {
			s.fail(w, r, aerr)
			return
		}
		h(w, r)
	}
}

// authorize authenticates the request and applies the per-key rate limit,
// which v1 and Stable Image requests and polls share; it returns the key.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (string, *apiError) {
	key, aerr := s.authenticate(r)
	if aerr != nil {
		return "", aerr
	}
	return key, s.admit(w, key)
}

// authenticate returns the request's bearer token.
func (s *Server) authenticate(r *http.Request) (string, *apiError) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", errorf(http.StatusUnauthorized, nameUnauthorized, "missing authorization header")
	}
	if s.cfg.Key != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.Key)) != 1 {
		return "", errorf(http.StatusUnauthorized, nameUnauthorized, "the API key in the authorization header is not valid")
	}
	return token, nil
}

// admit applies the per-key rate limit.
func (s *Server) admit(w http.ResponseWriter, key string) *apiError {
	s.mu.Lock()
	ok, left := s.limiter.allow(key, s.cfg.Now())
	s.mu.Unlock()
	if ok {
		return nil
	}
	if s.cfg.RetryAfter {
		secs := (left + time.Second - 1) / time.Second
		w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
	}
	return errorf(http.StatusTooManyRequests, nameRateLimited, "%s", s.limiter.message())
}

// fail writes an error answer and counts it: a Stable Image body (with an
// x-request-id header) for a path under /v2beta/, else a v1 body.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, e *apiError) {
	stable := isStableImage(r)
	s.mu.Lock()
	switch {
	case e.status == http.StatusTooManyRequests:
		s.stats.RateLimited++
	case e.status >= 500:
		s.stats.Failed++
	case e.name == nameContentModeration:
		s.stats.Moderated++
	default:
		s.stats.Rejected++
	}
	var id string
	if stable {
		id = s.newHexID()
	} else {
		id = s.newID()
	}
	s.mu.Unlock()
	s.log(r, e.status, "name", e.name)
	if stable {
		w.Header().Set("X-Request-Id", id)
		writeJSON(w, e.status, stableErrorBody{ID: id, Name: e.name, Errors: e.messages})
		return
	}
	writeJSON(w, e.status, errorBody{ID: id, Name: e.name, Message: e.message()})
}

// isStableImage reports whether r is addressed to the Stable Image API,
// whose answers have their own error body.
func isStableImage(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v2beta/") }

// newHexID returns a random 32-hex-digit id, the shape of the Stable Image
// API's error ids and request ids; s.mu must be held.
func (s *Server) newHexID() string {
	return fmt.Sprintf("%016x%016x", s.rng.Uint64(), s.rng.Uint64())
}

// newID returns a random UUID-shaped error id; s.mu must be held.
func (s *Server) newID() string {
	hi, lo := s.rng.Uint64(), s.rng.Uint64()
	hi = hi&^0xf000 | 0x4000     // version 4
	lo = lo&^(0xc<<60) | 0x8<<60 // RFC 4122 variant
	h := fmt.Sprintf("%016x%016x", hi, lo)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func (s *Server) log(r *http.Request, status int, args ...any) {
	if s.cfg.Log == nil {
		return
	}
	s.cfg.Log.Info("sandbox", append([]any{"method", r.Method, "path", r.URL.Path, "status", status}, args...)...)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, errorf(http.StatusNotFound, nameNotFound, "%s %s was not found.", r.Method, r.URL.Path))
}

// balanceBody is GET /v1/user/balance's answer; Credits marshals as an exact
// JSON number of credits.
type balanceBody struct {
	Credits cost.Credits `json:"credits"`
}

func (s *Server) balance(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	b := s.stats.Balance
	s.mu.Unlock()
	s.log(r, http.StatusOK)
	writeJSON(w, http.StatusOK, balanceBody{Credits: b})
}

type organization struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	IsDefault bool   `json:"is_default"`
}

type accountBody struct {
	ID            string         `json:"id"`
	Email         string         `json:"email"`
	Organizations []organization `json:"organizations"`
}

func (s *Server) account(w http.ResponseWriter, r *http.Request) {
	s.log(r, http.StatusOK)
	writeJSON(w, http.StatusOK, accountBody{
		ID:            "user-sandbox",
		Email:         "sandbox@example.com",
		Organizations: []organization{{ID: "org-sandbox", Name: "Sandbox", Role: "OWNER", IsDefault: true}},
	})
}

type engineBody struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"`
}

func (s *Server) engines(w http.ResponseWriter, r *http.Request) {
	all := engine.All()
	list := make([]engineBody, len(all))
	for i, e := range all {
		list[i] = engineBody{ID: e.ID, Name: e.Name, Description: "Stability-AI " + e.Name, Type: "PICTURE"}
	}
	s.log(r, http.StatusOK)
	writeJSON(w, http.StatusOK, list)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
