package stability

import (
	"github.com/batch-tool/batch/internal/catalog"

	"context"
	"errors"
	"net/http"
	"strings"
)

// ErrInvalidRequest reports a request refused by the client itself, before
// anything was sent or before its body was complete, so nothing was
// charged: an unknown service, a field its catalogue row lacks, a value
// outside its enum, an image input that cannot be opened or read or is not
// PNG, JPEG or WebP, a body over the API's 10 MiB, a generation id unfit
// for a URL. Retrying the same request cannot help.
var ErrInvalidRequest = errors.New("invalid request")

// Field is one multipart form field of a Stable Image request: a name and
// its value as text. An image input's Value is the path of the file whose
// bytes are sent as the part.
type Field struct {
	Name  string
	Value string
	// Data, when not nil, is the content of an image input's file as the
	// caller already holds it: it is sent instead of reading the file
	// again, and Value still names the file in errors. nil for a form
	// value, and for an input to read from its file.
	Data []byte
}

// Request is one image request: a v1 text-to-image call (Engine and
// TextToImage set) or a Stable Image call (Service and Fields set).
type Request struct {
	// Engine is the v1 engine id; "" for a Stable Image request.
	Engine string
	// TextToImage is the v1 JSON body; used when Engine is set.
	TextToImage TextToImageRequest
	// Service is the Stable Image service, e.g. "generate/core"; "" for a v1
	// request.
	Service string
	// Fields are the Stable Image form fields, in the order sent.
	Fields []Field
}

// Generate makes one attempt of req and streams its images into sink:
// TextToImage for a v1 request, StableImage for a Stable Image one (an
// asynchronous service is refused: it goes through Submit and Result). It
// never retries and never waits for a rate limit; the caller owns both.
func (c *Client) Generate(ctx context.Context, req Request, sink Sink) ([]Artifact, error) {
	if req.Service != "" {
		return c.StableImage(ctx, req.Service, req.Fields, sink)
	}
	return c.TextToImage(ctx, req.Engine, req.TextToImage, sink)
}

// Class says what an attempt's error means for whoever schedules attempts:
// whether the server did work, whether to retry, whether to stop.
type Class int

// The error classes.
const (
	// ClassNone is the class of a nil error.
	ClassNone Class = iota
	// ClassRateLimited is a 429: the server did no work; every request
	// should pause (APIError.RetryAfter, or the API's lock-out) and retry.
	ClassRateLimited
	// ClassUnauthorized is a 401, or a 403 other than content moderation:
	// the key is refused and no later request can succeed.
	ClassUnauthorized
	// ClassNoCredit is an answer saying the account cannot pay (402 or an
	// insufficient-balance message): no later request can succeed.
	ClassNoCredit
	// ClassModerated is a 403 content_moderation: the request was refused
	// and not charged; retrying the same request cannot help.
	ClassModerated
	// ClassRejected is a 422 (invalid_language, public_figure, …): refused
	// and not charged, not retried.
	ClassRejected
	// ClassInvalid is any other 4xx (400, 404, 413), or ErrInvalidRequest:
	// the request is wrong; not charged, not retried.
	ClassInvalid
	// ClassServer is a 5xx: the server did no work; retry with backoff.
	ClassServer
	// ClassNotSent is a connection failure before the request was written:
	// nothing was charged; retry with backoff.
	ClassNotSent
	// ClassUnknown is a failure after the request was sent (dropped
	// connection, timeout, a server gone quiet, broken body): the work may
	// have been done and billed.
	ClassUnknown
	// ClassOther is any other error (a malformed answer, an image over the
	// size cap, a *FinishReasonError, a local failure to store the image):
	// the server answered 2xx, so the work was done.
	ClassOther
)

var classNames = [...]string{"none", "rate-limited", "unauthorized", "no-credit", "moderated", "rejected", "invalid", "server", "not-sent", "unknown", "other"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "Class(?)"
}

// Classify returns the class of an error returned by Generate,
// TextToImage, StableImage, Submit or Result.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	if e, ok := errors.AsType[*APIError](err); ok {
		switch {
		case e.Status == http.StatusTooManyRequests:
			return ClassRateLimited
		case isNoCredit(e):
			return ClassNoCredit
		case e.Status == http.StatusForbidden && e.Name == "content_moderation":
			return ClassModerated
		case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
			return ClassUnauthorized
		case e.Status == http.StatusUnprocessableEntity:
			return ClassRejected
		case e.Status >= 500:
			return ClassServer
		}
		return ClassInvalid
	}
	if te, ok := errors.AsType[*TransportError](err); ok {
		if te.Sent {
			return ClassUnknown
		}
		return ClassNotSent
	}
	if errors.Is(err, ErrInvalidRequest) {
		return ClassInvalid
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return ClassUnknown
	}
	return ClassOther
}

// isNoCredit reports an answer saying the account cannot pay. Neither API
// documents a status for it, so the name and message are checked too.
func isNoCredit(e *APIError) bool {
	if e.Status == http.StatusPaymentRequired {
		return true
	}
	text := strings.ToLower(e.Name + " " + e.Message)
	for _, s := range []string{"insufficient_balance", "insufficient balance", "insufficient credit", "not have enough balance", "not enough balance", "not enough credits", "out of credits", "insufficient_credits"} {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// Async reports whether req is for an asynchronous Stable Image service,
// which is submitted (Submit) and then polled (Result) instead of answered
// at once (Generate).
func (r Request) Async() bool {
	if r.Service == "" {
		return false
	}
	op, ok := catalog.Lookup(r.Service)
	return ok && op.Async
}
