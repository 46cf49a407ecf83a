package sandbox

import (
	"fmt"
	"net/http"
	"time"
)

// The async services (catalog.Operation.Async: upscale/creative and
// edit/replace-background-and-relight) answer the submit with 200 {id} and
// the result later, at GET /v2beta/results/{id}: 202 {id, status:
// "in-progress"} until the generation is done, then 200 with the image or
// its JSON, as the accept header asks. Results are kept for ResultLife
// after they are done, and only the key that submitted a generation can
// fetch it; any other id, key or an expired result gets 404
// generation_not_found (the 2026-09 spec's Results operations). Creative
// upscales are also answered at their older path, which the spec still lists
// and clients still use.
//
// The price is charged once, when the submit is accepted: the API's
// billing is per successful result, and the sandbox knows at submit time
// that the result will succeed, so charging then is what keeps its balance
// exact for a client that never polls. A submit refused by validation,
// authentication, the rate limit, moderation or an injected failure is not
// charged, and polls are never charged, though they count against the rate
// limit like any request, as they do on the real API.

// legacyResultService is the only service answered at the older result
// path, /v2beta/stable-image/upscale/creative/result/{id}.
const legacyResultService = "upscale/creative"

// Defaults applied by New to zero-valued async Config fields.
const (
	DefaultAsyncDelay = 2 * time.Second
	DefaultResultLife = 24 * time.Hour // how long the API keeps a result
)

// pending is an async generation the sandbox holds, done or not.
type pending struct {
	result
	owner   string    // the bearer token that submitted it
	done    time.Time // from then on, polls get the result
	expires time.Time // from then on, polls get 404
}

// generations holds the async generations by id. It is not safe for
// concurrent use; Server guards it with its mutex.
type generations struct {
	byID map[string]*pending
	// order holds the ids oldest first, which is also the order in which
	// they expire, since every generation lives as long.
	order []string
}

// add keeps g under id, first forgetting the generations expired at now.
func (gs *generations) add(id string, g *pending, now time.Time) {
	for len(gs.order) > 0 {
		old, ok := gs.byID[gs.order[0]]
		if ok && now.Before(old.expires) {
			break
		}
		delete(gs.byID, gs.order[0])
		gs.order = gs.order[1:]
	}
	gs.byID[id] = g
	gs.order = append(gs.order, id)
}

// find returns the generation id names, if key submitted it, it is not
// expired at now, and service is "" or its service.
func (gs *generations) find(id, key, service string, now time.Time) (*pending, bool) {
	g, ok := gs.byID[id]
	if !ok || g.owner != key || !now.Before(g.expires) || service != "" && g.service != service {
		return nil, false
	}
	return g, true
}

// submitBody is the answer to an async submit.
type submitBody struct {
	ID string `json:"id"`
}

// progressBody is the answer to a poll of a generation not yet done.
type progressBody struct {
	ID     string `json:"id"`
	Status string `json:"status"` // always "in-progress"
}

// submit keeps the result of an accepted, charged async request as a new
// generation of key's and answers with its id.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, key string, res result) {
	s.mu.Lock()
	now := s.cfg.Now()
	id := s.newGenerationID()
	done := now.Add(max(s.cfg.AsyncDelay, 0))
	s.async.add(id, &pending{result: res, owner: key, done: done, expires: done.Add(s.cfg.ResultLife)}, now)
	s.stats.Generations++
	s.stats.Submitted++
	reqID := s.newHexID()
	s.mu.Unlock()
	s.log(r, http.StatusOK, "service", res.service, "generation", id)
	w.Header().Set("X-Request-Id", reqID)
	writeJSON(w, http.StatusOK, submitBody{ID: id})
}

// newGenerationID returns a random 64-hex-digit id, the shape of the API's
// generation ids (the spec's GenerationID); s.mu must be held.
func (s *Server) newGenerationID() string {
	return fmt.Sprintf("%016x%016x%016x%016x", s.rng.Uint64(), s.rng.Uint64(), s.rng.Uint64(), s.rng.Uint64())
}

// pollResult returns the handler of a result path. service, when not "",
// is the only service whose generations the path answers.
func (s *Server) pollResult(service string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.stats.Polls++
		s.mu.Unlock()
		key, aerr := s.authorize(w, r)
		if aerr != nil {
			s.fail(w, r, aerr)
			return
		}
		id := r.PathValue("id")
		s.mu.Lock()
		now := s.cfg.Now()
		g, found := s.async.find(id, key, service, now)
		s.mu.Unlock()
		if !found {
			s.fail(w, r, errorf(http.StatusNotFound, nameGenerationNotFound, "id: the generation either does not exist or has expired."))
			return
		}
		// g is never modified once kept, so it is read without the lock.
		asJSON, problem := negotiate(r.Header.Get("Accept"), g.format)
		if problem != "" {
			s.fail(w, r, badRequest("%s", problem))
			return
		}
		if now.Before(g.done) {
			s.mu.Lock()
			s.stats.InProgress++
			reqID := s.newHexID()
			s.mu.Unlock()
			s.log(r, http.StatusAccepted, "generation", id)
			w.Header().Set("X-Request-Id", reqID)
			writeJSON(w, http.StatusAccepted, progressBody{ID: id, Status: "in-progress"})
			return
		}
		s.deliver(w, r, g.result, asJSON, nil)
	}
}
