package stability

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNewClientBaseURL(t *testing.T) {
	tests := []struct {
		base    string
		want    string // c.base; "" when an error is wanted
		wantErr string
	}{
		{"", "https://api.stability.ai", ""},
		{"https://api.example.com/", "https://api.example.com", ""},
		{"https://api.example.com/prefix/", "https://api.example.com/prefix", ""},
		{"http://localhost:8080", "http://localhost:8080", ""},
		{"http://LOCALHOST", "http://LOCALHOST", ""},
		{"http://127.0.0.1:1234", "http://127.0.0.1:1234", ""},
		{"http://127.9.8.7", "http://127.9.8.7", ""},
		{"http://[::1]:99", "http://[::1]:99", ""},
		{"http://api.stability.ai", "", "plain http to api.stability.ai"},
		{"http://10.0.0.1", "", "plain http to 10.0.0.1"},
		{"http://localhost.example.com", "", "plain http"},
		{"http://[::2]", "", "plain http"},
		{"ftp://127.0.0.1", "", `scheme "ftp"`},
		{"api.stability.ai", "", `scheme ""`},
		{"https://", "", "no host"},
		{"https://user:pw@api.example.com", "", "credentials"},
		{"https://api.example.com/?key=x", "", "query"},
		{"https://api.example.com/#frag", "", "fragment"},
		{"://bad", "", "not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.base, func(t *testing.T) {
			c, err := NewClient(Options{BaseURL: tt.base})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewClient(%q) error = %v, want containing %q", tt.base, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "key=x") {
					t.Errorf("error %q repeats secrets from the URL", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewClient(%q): %v", tt.base, err)
			}
			if c.base != tt.want {
				t.Errorf("NewClient(%q).base = %q, want %q", tt.base, c.base, tt.want)
			}
		})
	}
}

func TestNewClientRejectsHeaderInjection(t *testing.T) {
	for _, o := range []Options{
		{APIKey: "abc\r\nX-Evil: 1"},
		{ClientID: "a\nb"},
		{ClientVersion: "1\r"},
		{Organization: "org\x00"},
	} {
		_, err := NewClient(o)
		if err == nil {
			t.Errorf("NewClient(%+v) = nil error, want one", o)
			continue
		}
		if strings.Contains(err.Error(), "abc") {
			t.Errorf("error %q repeats the key", err)
		}
	}
}

func TestHeadersSent(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		call func(*Client) error
		want map[string]string // "" = header must be absent
	}{
		{
			name: "text-to-image png with organization",
			opts: Options{APIKey: testKey, ClientID: "my-plugin", ClientVersion: "1.2.3", Organization: "org-42"},
			call: func(c *Client) error {
				_, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{}, newMemSink())
				return err
			},
			want: map[string]string{
				"Authorization":            "Bearer " + testKey,
				"Accept":                   "image/png",
				"Content-Type":             "application/json",
				"Stability-Client-Id":      "my-plugin",
				"Stability-Client-Version": "1.2.3",
				"User-Agent":               "my-plugin/1.2.3",
				"Organization":             "org-42",
			},
		},
		{
			name: "text-to-image json defaults",
			opts: Options{APIKey: testKey},
			call: func(c *Client) error {
				_, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{Samples: 2}, newMemSink())
				return err
			},
			want: map[string]string{
				"Authorization":            "Bearer " + testKey,
				"Accept":                   "application/json",
				"Stability-Client-Id":      "batch",
				"Stability-Client-Version": "dev",
				"User-Agent":               "batch/dev",
				"Organization":             "",
			},
		},
		{
			name: "balance without key",
			opts: Options{},
			call: func(c *Client) error { _, err := c.Balance(t.Context()); return err },
			want: map[string]string{
				"Authorization": "",
				"Accept":        "application/json",
				"Content-Type":  "",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got http.Header
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				got = r.Header.Clone()
				w.WriteHeader(http.StatusTeapot)
			})
			tt.opts.BaseURL = c.base
			c, err := NewClient(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			err = tt.call(c)
			if _, ok := errors.AsType[*APIError](err); !ok {
				t.Fatalf("call error = %v, want *APIError", err)
			}
			checkNoSecret(t, err)
			for k, want := range tt.want {
				if v, present := got[k]; want == "" && present {
					t.Errorf("header %s = %q, want absent", k, v)
				} else if want != "" && got.Get(k) != want {
					t.Errorf("header %s = %q, want %q", k, got.Get(k), want)
				}
			}
		})
	}
}

func TestAPIErrorBodies(t *testing.T) {
	now := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		want       APIError
		wantString string
	}{
		{
			name:   "v1 body",
			status: 400,
			body:   `{"id":"9160aa70","name":"invalid_sdxl_v1_dimensions","message":"height and width must be one of …"}`,
			want:   APIError{Status: 400, ID: "9160aa70", Name: "invalid_sdxl_v1_dimensions", Message: "height and width must be one of …"},
			wantString: "text-to-image stable-diffusion-xl-1024-v1-0: image API: 400 Bad Request: " +
				"invalid_sdxl_v1_dimensions: height and width must be one of …",
		},
		{
			name:   "v2beta errors array with retry-after seconds",
			status: 429,
			header: map[string]string{"Retry-After": "60"},
			body:   `{"id":"rate_limit_exceeded","name":"rate_limit_exceeded","errors":["You have exceeded the rate limit.", "Timed out for 60 seconds."]}`,
			want: APIError{Status: 429, ID: "rate_limit_exceeded", Name: "rate_limit_exceeded",
				Message: "You have exceeded the rate limit.; Timed out for 60 seconds.", RetryAfter: 60 * time.Second},
		},
		{
			name:   "retry-after http date",
			status: 503,
			header: map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)},
			body:   `{"id":"x","name":"server_error","message":"try later"}`,
			want:   APIError{Status: 503, ID: "x", Name: "server_error", Message: "try later", RetryAfter: 90 * time.Second},
		},
		{
			name:   "retry-after date in the past",
			status: 503,
			header: map[string]string{"Retry-After": now.Add(-time.Hour).Format(http.TimeFormat)},
			body:   `{"name":"server_error","message":"m"}`,
			want:   APIError{Status: 503, Name: "server_error", Message: "m"},
		},
		{
			name:   "retry-after garbage",
			status: 429,
			header: map[string]string{"Retry-After": "soon"},
			body:   `{"name":"rate_limited","message":"m"}`,
			want:   APIError{Status: 429, Name: "rate_limited", Message: "m"},
		},
		{
			name:   "errors of other types",
			status: 400,
			body:   `{"name":"bad_request","message":"two problems","errors":[{"field":"width"},7]}`,
			want:   APIError{Status: 400, Name: "bad_request", Message: `two problems; {"field":"width"}; 7`},
		},
		{
			name:       "plain text body",
			status:     502,
			body:       "<html>\n  <b>Bad gateway</b>\n</html>\n",
			want:       APIError{Status: 502, Message: "<html> <b>Bad gateway</b> </html>"},
			wantString: "text-to-image stable-diffusion-xl-1024-v1-0: image API: 502 Bad Gateway: <html> <b>Bad gateway</b> </html>",
		},
		{
			name:   "empty body",
			status: 500,
			want:   APIError{Status: 500, Message: "(no message)"},
		},
		{
			name:   "key echoed by the server",
			status: 401,
			body:   `{"name":"unauthorized","message":"key ` + testKey + ` is not valid"}`,
			want:   APIError{Status: 401, Name: "unauthorized", Message: "key [redacted] is not valid"},
		},
		{
			name:   "long message cut at 1 KiB",
			status: 400,
			body:   `{"name":"bad_request","message":"` + strings.Repeat("é", 1000) + `"}`,
			want:   APIError{Status: 400, Name: "bad_request", Message: strings.Repeat("é", 512) + "…"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			c.now = func() time.Time { return now }
			_, err := c.TextToImage(t.Context(), "stable-diffusion-xl-1024-v1-0", TextToImageRequest{}, newMemSink())
			apiErr, ok := errors.AsType[*APIError](err)
			if !ok {
				t.Fatalf("TextToImage error = %v, want *APIError", err)
			}
			if *apiErr != tt.want {
				t.Errorf("APIError = %+v, want %+v", *apiErr, tt.want)
			}
			if tt.wantString != "" && err.Error() != tt.wantString {
				t.Errorf("error string = %q, want %q", err, tt.wantString)
			}
			checkNoSecret(t, err)
		})
	}
}

func TestAPIErrorBodyReadIsBounded(t *testing.T) {
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		chunk := strings.Repeat("x", 64<<10)
		for range 64 { // 4 MiB, more than the 1 MiB limit
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	})
	_, err := c.Balance(t.Context())
	apiErr, ok := errors.AsType[*APIError](err)
	if !ok {
		t.Fatalf("Balance error = %v, want *APIError", err)
	}
	if n := len(apiErr.Message); n > maxErrorMessage+len("…") {
		t.Errorf("len(Message) = %d, want ≤ %d", n, maxErrorMessage)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"0", 0, true},
		{" 120 ", 120 * time.Second, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"Wed, 25 Nov 2026 06:00:30 GMT", 30 * time.Second, true},
		{"Wednesday, 25-Nov-26 06:01:00 GMT", time.Minute, true}, // RFC 850
		{"Wed Nov 25 06:00:05 2026", 5 * time.Second, true},      // asctime
		{"Wed, 25 Nov 2026 05:00:00 GMT", 0, true},
		{"99999999999999999", time.Duration(1<<63-1) / time.Second * time.Second, true},
		{"", 0, false},
		{"tomorrow", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v, %v, want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestTransportErrorNotSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the dial is refused
	c, err := NewClient(Options{BaseURL: "http://" + addr, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.TextToImage(t.Context(), "eng", TextToImageRequest{}, newMemSink())
	te, ok := errors.AsType[*TransportError](err)
	if !ok {
		t.Fatalf("TextToImage error = %v, want *TransportError", err)
	}
	if te.Sent {
		t.Errorf("TransportError.Sent = true for a refused dial, want false")
	}
	if !strings.HasPrefix(err.Error(), "text-to-image eng: request not sent: ") {
		t.Errorf("error = %q, want the operation and \"request not sent\"", err)
	}
	checkNoSecret(t, err)
}

func TestTransportErrorSent(t *testing.T) {
	for _, tt := range []struct {
		name    string
		samples int
		respond string // written before the connection is closed
	}{
		{"closed before any answer", 1, ""},
		{"closed mid png body", 1, "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nSeed: 1\r\nFinish-Reason: SUCCESS\r\nContent-Length: 1000\r\n\r\n\x89PNG"},
		{"closed mid json body", 2, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\n{\"artifacts\":[{\"base64\":\"AAAA\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body) // the whole request arrived
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				buf.WriteString(tt.respond)
				buf.Flush()
				conn.Close()
			})
			sink := newMemSink()
			_, err := c.TextToImage(t.Context(), "eng", TextToImageRequest{Samples: tt.samples}, sink)
			te, ok := errors.AsType[*TransportError](err)
			if !ok {
				t.Fatalf("TextToImage error = %v, want *TransportError", err)
			}
			if !te.Sent {
				t.Errorf("TransportError.Sent = false after the request was written, want true")
			}
			if !strings.Contains(err.Error(), "outcome unknown") {
				t.Errorf("error = %q, want \"outcome unknown\"", err)
			}
			checkNoSecret(t, err)
		})
	}
}

func TestContextCancelledBeforeAnswer(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	release := make(chan struct{})
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		cancel() // the request has arrived: the caller gives up before any answer
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	_, err := c.Balance(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Balance error = %v, want context.Canceled", err)
	}
	if te, ok := errors.AsType[*TransportError](err); !ok || !te.Sent {
		t.Errorf("Balance error = %#v, want *TransportError with Sent", err)
	}
}

func TestNoRedirects(t *testing.T) {
	var hits int
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		hits++
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	_, err := c.Balance(t.Context())
	apiErr, ok := errors.AsType[*APIError](err)
	if !ok || apiErr.Status != http.StatusFound {
		t.Fatalf("Balance error = %v, want *APIError 302", err)
	}
	if hits != 1 {
		t.Errorf("server saw %d requests, want 1 (no redirect followed)", hits)
	}
}
