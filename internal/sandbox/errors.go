package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Error names the sandbox answers with, as the v1 API names them
// (CONTRACT.md §6). The size names come from package engine.
const (
	nameBadRequest          = "bad_request"
	nameInvalidSamples      = "invalid_samples"
	nameUnauthorized        = "unauthorized"
	nameNotFound            = "not_found"
	nameRateLimited         = "rate_limit_exceeded"
	nameServerError         = "server_error"
	nameInsufficientBalance = "insufficient_balance"
)

// apiError is an error answer: an HTTP status and the v1 body's name and
// message.
type apiError struct {
	status  int
	name    string
	message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.name, e.message) }

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, nameBadRequest, fmt.Sprintf(format, args...)}
}

// errorBody is the v1 error body. The spec's Error schema also lists a
// "status" property as required but never defines it; the live API does not
// send it (CONTRACT.md §6), so neither do we.
type errorBody struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// writeJSON writes v as the whole answer, with an exact Content-Length.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own fixed types reach here
		http.Error(w, "sandbox: encode answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
