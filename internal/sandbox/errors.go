package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Error names the sandbox answers with. The v1 names are the v1 spec's
// (internal/prismtest/stability-v1-openapi-2025-02.json, responses 400–500);
// the size names come from package engine. The Stable Image names are the
// 2026-09 spec's (internal/prismtest/stability-v2beta-openapi-2026-09.json,
// components.responses), which calls its 500 internal_error where v1 says
// server_error. Neither spec names a status for an empty balance:
// insufficient_balance is the sandbox's own (see the package comment).
const (
	nameBadRequest          = "bad_request"
	nameInvalidSamples      = "invalid_samples"
	nameUnauthorized        = "unauthorized"
	nameNotFound            = "not_found"
	nameRateLimited         = "rate_limit_exceeded"
	nameServerError         = "server_error"
	nameInsufficientBalance = "insufficient_balance"

	nameInternalError      = "internal_error"
	nameContentModeration  = "content_moderation"
	namePayloadTooLarge    = "payload_too_large"
	nameGenerationNotFound = "generation_not_found"
)

// apiError is an error answer: an HTTP status, a name and one or more
// messages. A v1 body carries them joined as its message; a Stable Image
// body lists them in errors.
type apiError struct {
	status   int
	name     string
	messages []string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, e.name, e.message())
}

func (e *apiError) message() string { return strings.Join(e.messages, "; ") }

// errorf returns an apiError with one formatted message.
func errorf(status int, name, format string, args ...any) *apiError {
	return &apiError{status: status, name: name, messages: []string{fmt.Sprintf(format, args...)}}
}

func badRequest(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, nameBadRequest, format, args...)
}

// errorBody is the v1 error body. The spec's Error schema also lists a
// "status" property as required but never defines it; the live API does not
// send it (a real body is quoted in jezs00/pycasso#70:
// {"id","message","name"}), so neither do we.
type errorBody struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// stableErrorBody is the Stable Image error body, the 2026-09 spec's Error
// and ContentModerationResponse schemas: errors has at least one message.
type stableErrorBody struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	Errors []string `json:"errors"`
}

// writeJSON writes v as the whole answer, with an exact Content-Length and
// the Content-Type application/json.
func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONType(w, status, "application/json", v)
}

// writeJSONType writes v as the whole answer with the given Content-Type.
func writeJSONType(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own fixed types reach here
		http.Error(w, "sandbox: encode answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
