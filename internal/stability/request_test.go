package stability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// TestClassify sends one request of each API to a server giving a real
// answer (bodies from the specs' examples and from answers seen live) and
// classifies the error.
func TestClassify(t *testing.T) {
	type answer struct {
		status int
		body   string
	}
	tests := []struct {
		name string
		v1   *answer // nil: the v1 API does not answer so
		v2   *answer // nil: the Stable Image API does not answer so
		want Class
	}{
		{
			name: "content moderation",
			v2:   &answer{403, `{"id":"ed14db44362126aab3cbd25cca51ffe3","name":"content_moderation","errors":["Your request was flagged by our content moderation system, as a result your request was denied and you were not charged."]}`},
			want: ClassModerated,
		},
		{
			name: "permission denied",
			v1:   &answer{403, `{"id":"a1","name":"permission_denied","message":"You do not have permission to access this resource"}`},
			v2:   &answer{403, `{"id":"a1","name":"forbidden","errors":["You do not have permission to access this resource"]}`},
			want: ClassUnauthorized,
		},
		{
			name: "missing key",
			v1:   &answer{401, `{"id":"a2","name":"unauthorized","message":"missing authorization header"}`},
			v2:   &answer{401, `{"id":"a2","name":"unauthorized","errors":["authorization: invalid or missing header value"]}`},
			want: ClassUnauthorized,
		},
		{
			name: "payment required",
			v1:   &answer{402, ``},
			v2:   &answer{402, `{"id":"a3","name":"payment_required","errors":["lack of funds"]}`},
			want: ClassNoCredit,
		},
		{
			name: "insufficient balance in the text",
			v1:   &answer{400, `{"id":"a4","name":"bad_request","message":"Your organization does not have enough balance to request this action"}`},
			v2:   &answer{403, `{"id":"a4","name":"insufficient_balance","errors":["not enough credits"]}`},
			want: ClassNoCredit,
		},
		{
			name: "rejected",
			v2:   &answer{422, `{"id":"ff54b236a3acdde1522cb1ba641c43ed","name":"public_figure","errors":["Our system detected the likeness of a public figure in your image. To comply with our guidelines, this request cannot be processed. Please upload a different image."]}`},
			want: ClassRejected,
		},
		{
			name: "invalid language",
			v2:   &answer{422, `{"id":"ff54b236a3acdde1522cb1ba641c43ed","name":"invalid_language","errors":["English is the only supported language for this service."]}`},
			want: ClassRejected,
		},
		{
			name: "payload too large",
			v2:   &answer{413, `{"id":"4212a4b66fbe1cedca4bf2133d35dca5","name":"payload_too_large","errors":["body: payloads cannot be larger than 10MiB in size"]}`},
			want: ClassInvalid,
		},
		{
			name: "bad request",
			v1:   &answer{400, `{"id":"9160aa70","name":"invalid_sdxl_v1_dimensions","message":"height and width must be one of …"}`},
			v2:   &answer{400, `{"id":"a5","name":"bad_request","errors":["aspect_ratio: must be one of 21:9, 16:9"]}`},
			want: ClassInvalid,
		},
		{
			name: "not found",
			v1:   &answer{404, `{"id":"a6","message":"The specified engine (ID stable-diffusion-xl-beta-v2-2-2) was not found.","name":"not_found"}`},
			want: ClassInvalid,
		},
		{
			name: "rate limited",
			v1:   &answer{429, `{"id":"rate_limit_exceeded","name":"rate_limit_exceeded","message":"You have exceeded the rate limit"}`},
			v2:   &answer{429, `{"id":"rate_limit_exceeded","name":"rate_limit_exceeded","errors":["You have exceeded the rate limit of 150 requests within a 10 second period, and have been timed out for 60 seconds."]}`},
			want: ClassRateLimited,
		},
		{
			name: "internal error",
			v1:   &answer{500, `{"id":"a7","name":"server_error","message":"An unexpected server error occurred, please try again."}`},
			v2:   &answer{500, `{"id":"2a1b2d4eafe2bc6ab4cd4d5c6133f513","name":"internal_error","errors":["An unexpected server error has occurred, please try again later."]}`},
			want: ClassServer,
		},
		{
			name: "gateway",
			v1:   &answer{502, "<html><body>Bad gateway</body></html>"},
			v2:   &answer{503, "upstream connect error"},
			want: ClassServer,
		},
		{
			name: "malformed success",
			v1:   &answer{200, "not an image"},
			v2:   &answer{200, "not an image"},
			want: ClassOther,
		},
	}
	calls := map[string]func(*Client, context.Context) error{
		"v1": func(c *Client, ctx context.Context) error {
			_, err := c.TextToImage(ctx, "stable-diffusion-xl-1024-v1-0", TextToImageRequest{}, newMemSink())
			return err
		},
		"v2beta": func(c *Client, ctx context.Context) error {
			_, err := c.StableImage(ctx, "generate/core", []Field{{Name: "prompt", Value: "a cat"}}, newMemSink())
			return err
		},
	}
	for _, tt := range tests {
		for api, a := range map[string]*answer{"v1": tt.v1, "v2beta": tt.v2} {
			if a == nil {
				continue
			}
			t.Run(tt.name+"/"+api, func(t *testing.T) {
				c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					if a.status == 200 {
						w.Header().Set("Content-Type", "image/png")
						w.Header().Set("Seed", "1")
						w.Header().Set("Finish-Reason", "DONE") // not a finish reason
					} else if a.body != "" && a.body[0] == '{' {
						w.Header().Set("Content-Type", "application/json")
					}
					w.WriteHeader(a.status)
					io.WriteString(w, a.body)
				})
				err := calls[api](c, t.Context())
				if got := Classify(err); got != tt.want {
					t.Errorf("Classify(%v) = %v, want %v", err, got, tt.want)
				}
				checkNoSecret(t, err)
			})
		}
	}

	// Failures that are not answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now: the dial is refused
	for api, call := range calls {
		t.Run("refused dial/"+api, func(t *testing.T) {
			c, err := NewClient(Options{BaseURL: refused, APIKey: testKey})
			if err != nil {
				t.Fatal(err)
			}
			if err := call(c, t.Context()); Classify(err) != ClassNotSent {
				t.Errorf("Classify(%v) = %v, want %v", err, Classify(err), ClassNotSent)
			}
		})
		t.Run("connection dropped after the request/"+api, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body) // the whole request arrived
				conn, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				conn.Close()
			})
			if err := call(c, t.Context()); Classify(err) != ClassUnknown {
				t.Errorf("Classify(%v) = %v, want %v", err, Classify(err), ClassUnknown)
			}
		})
	}

	for _, tt := range []struct {
		err  error
		want Class
	}{
		{nil, ClassNone},
		{fmt.Errorf("stable-image x: %w: unknown service", ErrInvalidRequest), ClassInvalid},
		{fmt.Errorf("run: %w", context.Canceled), ClassUnknown},
		{errors.New("disk full"), ClassOther},
	} {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestClassString(t *testing.T) {
	for c, want := range map[Class]string{ClassNone: "none", ClassModerated: "moderated", ClassOther: "other", Class(99): "Class(?)"} {
		if got := c.String(); got != want {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), got, want)
		}
	}
}
