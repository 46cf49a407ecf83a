package stability

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultBaseURL is the API's base URL when Options.BaseURL is empty.
const DefaultBaseURL = "https://api.stability.ai"

// DefaultClientID is the Stability-Client-ID header when Options.ClientID is empty.
const DefaultClientID = "batch"

// defaultClientVersion is the Stability-Client-Version header when
// Options.ClientVersion is empty.
const defaultClientVersion = "dev"

const (
	maxErrorBody    = 1 << 20 // bytes of an error body read, as go-github does
	maxErrorMessage = 1 << 10 // bytes of APIError.Message kept
	maxErrorID      = 128     // bytes of APIError.ID and Name kept
	maxNetError     = 256     // bytes of a network error's text kept
	maxJSONBody     = 1 << 20 // bytes of a balance, account or engines body read
	maxDrain        = 4 << 10 // bytes read after a JSON value so the connection can be reused
)

// DefaultConcurrency is Options.Concurrency when zero: 100 requests in
// flight, as many idle connections as net/http's default transport keeps
// for all hosts together.
const DefaultConcurrency = 100

// DefaultMaxImageBytes is Options.MaxImageBytes when zero: 64 MiB, more
// than the largest image the API returns can take (a 4× fast upscale is
// about 16.8 megapixels: some 50 MB of RGB pixels before PNG compresses
// them), and far from the gigabytes a broken or hostile server could send.
const DefaultMaxImageBytes = 64 << 20

// ErrMalformedResponse reports a 2xx answer whose headers or body do not
// follow the API contract: a broken JSON shape, a missing seed, an unknown
// finish reason, the wrong number of artifacts, an image of another format
// than asked, a generation id unfit for a URL. The server did the work, so
// the attempt should be counted as spent.
var ErrMalformedResponse = errors.New("malformed response")

// Options configures a Client. The zero value talks to DefaultBaseURL with
// no API key.
type Options struct {
	// BaseURL is the scheme and host, optionally with a path prefix, e.g.
	// "https://api.stability.ai" (the default when empty) or
	// "http://127.0.0.1:8080". Plain http is accepted only for loopback
	// hosts: localhost, 127.0.0.0/8 and ::1.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer KEY". Empty is allowed (the
	// caller decides whether that is an error) and sends no Authorization
	// header. The key never appears in errors.
	APIKey string
	// ClientID is the Stability-Client-ID header; empty means DefaultClientID.
	ClientID string
	// ClientVersion is the Stability-Client-Version header; empty means "dev".
	ClientVersion string
	// Organization, when set, is sent as the Organization header to scope
	// requests to a non-default organization, e.g. "org-123456".
	Organization string
	// AcceptJSON asks the Stable Image services and result polls for JSON
	// answers (the image as base64, decoded as it streams in) instead of the
	// image bytes: for proxies that re-encode binary bodies. The zero value
	// asks for the bytes. v1 requests are not affected.
	AcceptJSON bool
	// HTTPClient sends the requests; nil means a client with no overall
	// timeout (contexts bound every call). It is copied, and the copy never
	// follows redirects, so the key and body go only to BaseURL. When it is
	// nil or its Transport is nil, the client uses a transport of its own
	// sized by Concurrency.
	HTTPClient *http.Client
	// Concurrency is the most requests the caller keeps in flight at
	// once (a run's workers); zero or less means DefaultConcurrency. The
	// client's own transport keeps that many idle connections to the API,
	// so each request after the first wave reuses one: a run opens about
	// Concurrency connections whatever its length, where net/http's
	// default of 2 idle per host would open one for nearly every request,
	// each a TLS handshake against the API. It does not limit the
	// requests in flight.
	Concurrency int
	// Now is the clock used to turn a Retry-After date into a duration; nil
	// means time.Now.
	Now func() time.Time
	// TTFBTimeout bounds the wait for an answer's headers once the whole
	// request is sent (time to first byte); zero means DefaultTTFBTimeout.
	// When it runs out the request fails with a *TransportError whose Sent
	// is true (the outcome is unknown) wrapping a *TimeoutError.
	TTFBTimeout time.Duration
	// StallTimeout bounds every wait for progress apart from the first
	// byte: connecting and sending the request (each chunk of the body the
	// connection takes restarts it) and each read of the answer's body;
	// zero means DefaultStallTimeout. When it runs out the request fails
	// with a *TransportError wrapping a *TimeoutError: not sent while the
	// request was being sent, outcome unknown once it was.
	StallTimeout time.Duration
	// MaxImageBytes caps each image of an answer, in bytes; zero means
	// DefaultMaxImageBytes. A larger image fails the attempt with
	// ErrMalformedResponse (the server did the work): a raw answer whose
	// Content-Length is over it is refused before its body is read, and a
	// JSON answer may be at most twice the cap per image plus 1 MiB.
	MaxImageBytes int64
}

// Client calls the Stability AI REST API, v1 and Stable Image (v2beta).
// Each method makes exactly one HTTP request: there are no retries and no
// rate limiting here, the caller owns both. A Client is immutable and safe
// for concurrent use.
type Client struct {
	base      string // scheme://host[/prefix], no trailing slash
	key       string
	clientID  string
	version   string
	org       string
	userAgent string
	hc        *http.Client
	now       func() time.Time
	open      func(name string) (fs.File, error) // opens an image input; os.Open
	red       *redactor                          // scrubs the key from server values
	// ttfb and stall are the limits on a quiet server, see Options.
	ttfb, stall time.Duration
	maxImage    int64 // bytes per image
	// accept and resultAccept are the Accept headers of Stable Image
	// requests and of result polls.
	accept, resultAccept string
	bufs                 *buffers // the buffers images stream through
}

// NewClient checks o and returns a Client. It refuses a BaseURL that is not
// an absolute http(s) URL, carries credentials, a query or a fragment, or
// uses plain http to a host that is not loopback.
func NewClient(o Options) (*Client, error) {
	base, err := checkBaseURL(o.BaseURL)
	if err != nil {
		return nil, err
	}
	if !validHeaderValue(o.APIKey) {
		return nil, errors.New("API key contains characters not allowed in an HTTP header")
	}
	c := &Client{
		base:     base,
		key:      o.APIKey,
		clientID: cmp.Or(o.ClientID, DefaultClientID),
		version:  cmp.Or(o.ClientVersion, defaultClientVersion),
		org:      o.Organization,
		now:      o.Now,
		open:     func(name string) (fs.File, error) { return os.Open(name) },
		red:      newRedactor(o.APIKey),
		bufs:     new(buffers),
		ttfb:     o.TTFBTimeout,
		stall:    o.StallTimeout,
		maxImage: o.MaxImageBytes,
		// The spec's accept values for results are */* (the bytes) and
		// application/json; image/*, which its code samples send, is not one.
		accept: "image/*", resultAccept: "*/*",
	}
	if o.AcceptJSON {
		c.accept, c.resultAccept = "application/json", "application/json"
	}
	for _, f := range [...]struct{ name, v string }{{"client ID", c.clientID}, {"client version", c.version}, {"organization", c.org}} {
		if !validHeaderValue(f.v) {
			return nil, fmt.Errorf("%s %q contains characters not allowed in an HTTP header", f.name, f.v)
		}
	}
	c.userAgent = c.clientID + "/" + c.version
	if c.now == nil {
		c.now = time.Now
	}
	if c.ttfb <= 0 {
		c.ttfb = DefaultTTFBTimeout
	}
	if c.stall <= 0 {
		c.stall = DefaultStallTimeout
	}
	if c.maxImage <= 0 {
		c.maxImage = DefaultMaxImageBytes
	}
	hc := http.Client{}
	if o.HTTPClient != nil {
		hc = *o.HTTPClient
	}
	if hc.Transport == nil {
		hc.Transport = newTransport(cmp.Or(max(o.Concurrency, 0), DefaultConcurrency))
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &hc
	return c, nil
}

// newTransport returns net/http's default transport settings with room
// for conns idle connections, all of them to one host if need be: the
// client talks to BaseURL alone. Connecting and every later wait are also
// bounded by the watchdog (see Options.StallTimeout).
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
}

func checkBaseURL(raw string) (string, error) {
	if raw == "" {
		raw = DefaultBaseURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("base URL is not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("base URL scheme %q: want https (or http to a loopback host)", u.Scheme)
	case u.Host == "":
		return "", errors.New("base URL has no host")
	case u.User != nil:
		return "", errors.New("base URL must not contain credentials; set the API key instead")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", errors.New("base URL must not have a query or fragment")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return "", fmt.Errorf("base URL uses plain http to %s: the API key would travel unencrypted; use https, or http only to localhost, 127.0.0.0/8 or ::1", u.Hostname())
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// isLoopback reports whether host (without port or brackets) is
// "localhost" or a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// TransportError reports a request that got no HTTP answer, or whose answer
// broke off while its body was being read.
type TransportError struct {
	// Sent reports whether the request may have reached the server: false
	// when it failed before the whole request was written (a dial error, a
	// refused connection), so the server did no work; true when it was
	// written and the answer never came or broke off, so the outcome is
	// unknown and the attempt may have been charged.
	Sent bool
	// Err is the cause: a network error (its text scrubbed of the key, as
	// a malformed status line may quote the server), a *TimeoutError when
	// the server went quiet (see Options.TTFBTimeout and StallTimeout), or
	// the context's error when the context was cancelled or timed out.
	Err error
}

func (e *TransportError) Error() string {
	if e.Sent {
		return "outcome unknown: request was sent: " + e.Err.Error()
	}
	return "request not sent: " + e.Err.Error()
}

// Unwrap returns Err, so errors.Is(err, context.Canceled) works.
func (e *TransportError) Unwrap() error { return e.Err }

// transportError builds a TransportError without the request URL, with the
// context's error in place of the transport's when the context is done, or
// the watchdog's when it cut the request short (wd may be nil), and with
// any other error's text scrubbed of the key.
func (c *Client) transportError(ctx context.Context, wd *watchdog, sent bool, err error) *TransportError {
	err = withoutURL(err)
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case wd != nil && wd.fired() != nil:
		err = wd.fired()
	default:
		err = c.red.scrubError(err, maxNetError)
	}
	return &TransportError{Sent: sent, Err: err}
}

// withoutURL unwraps a *url.Error, whose text repeats the method and the
// full URL.
func withoutURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// requestBody is the body of a request: a reader of exactly n bytes, sent
// with Content-Type ctype.
type requestBody struct {
	r     io.Reader
	n     int64
	ctype string
	data  []byte // the bytes of r when held in memory, so the transport may replay them; nil for a stream
}

// jsonBody is a requestBody for an encoded JSON value.
func jsonBody(b []byte) *requestBody {
	return &requestBody{r: bytes.NewReader(b), n: int64(len(b)), ctype: "application/json", data: b}
}

// send makes one request and returns the response when its status is 2xx.
// Otherwise it returns an *APIError or a *TransportError, wrapped with op.
// body may be nil. The request is watched for a quiet server (see
// watchdog) until the caller closes the response body, which it must.
func (c *Client) send(ctx context.Context, op, method, path, accept string, body *requestBody) (_ *http.Response, err error) {
	rctx, wd := newWatchdog(ctx, c.ttfb, c.stall)
	defer func() {
		if err != nil {
			wd.stop()
		}
	}()
	// WroteRequest fires once the whole request, body included, is written;
	// it tells "never sent" (the server cannot have done the work) from
	// "outcome unknown" also for a body streamed from disk.
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
				wd.enter(firstByte)
			}
		},
	}
	var rd io.Reader
	if body != nil {
		rd = sendingReader{r: body.r, w: wd}
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(rctx, trace), method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s: build request: %w", op, withoutURL(err))
	}
	h := req.Header
	if c.key != "" { // without a key, the API answers 401 "missing authorization header"
		h.Set("Authorization", "Bearer "+c.key)
	}
	h.Set("Accept", accept)
	h.Set("Stability-Client-ID", c.clientID)
	h.Set("Stability-Client-Version", c.version)
	h.Set("User-Agent", c.userAgent)
	if c.org != "" {
		h.Set("Organization", c.org)
	}
	if body != nil {
		h.Set("Content-Type", body.ctype)
		req.ContentLength = body.n // a streamed body is sent with its length, not chunked
		if data := body.data; data != nil {
			req.GetBody = func() (io.ReadCloser, error) {
				return io.NopCloser(sendingReader{r: bytes.NewReader(data), w: wd}), nil
			}
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, c.transportError(ctx, wd, wrote.Load(), err))
	}
	wd.enter(reading)
	wd.idle() // the clock runs only while the caller waits in Read
	resp.Body = &watchedBody{rc: resp.Body, w: wd, left: resp.ContentLength}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, fmt.Errorf("%s: %w", op, c.apiError(resp))
	}
	return resp, nil
}

// apiError reads a non-2xx answer: the v1 body {id,name,message}, the
// v2beta body {id,name,errors:[…]}, or any other text.
func (c *Client) apiError(resp *http.Response) *APIError {
	e := &APIError{Status: resp.StatusCode}
	if v := resp.Header.Get("Retry-After"); v != "" {
		e.RetryAfter, _ = parseRetryAfter(v, c.now())
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody)) // on a read error, keep what arrived
	var b struct {
		ID      string            `json:"id"`
		Name    string            `json:"name"`
		Message string            `json:"message"`
		Errors  []json.RawMessage `json:"errors"`
	}
	msg := ""
	if err := json.Unmarshal(data, &b); err == nil {
		e.ID, e.Name = c.clean(b.ID, maxErrorID), c.clean(b.Name, maxErrorID)
		parts := []string{}
		if b.Message != "" {
			parts = append(parts, b.Message)
		}
		for _, raw := range b.Errors {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				s = string(raw)
			}
			parts = append(parts, s)
		}
		msg = strings.Join(parts, "; ")
	} else {
		msg = string(data)
	}
	if e.Message = c.clean(msg, maxErrorMessage); e.Message == "" {
		e.Message = "(no message)"
	}
	return e
}

// clean scrubs s of the API key and of every piece of it (see redactor)
// should a server echo it, collapses whitespace, and keeps at most limit
// bytes, cut at a rune boundary.
func (c *Client) clean(s string, limit int) string { return c.red.clean(s, limit) }

// parseRetryAfter reads a Retry-After header given as seconds or as an HTTP
// date, relative to now. A date in the past gives zero.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		const maxSeconds = int64(1<<63-1) / int64(time.Second)
		return time.Duration(min(s, maxSeconds)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// recordingReader remembers the first read error of the body, so a broken
// connection is told apart from a malformed body or a failing sink.
type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// getJSON makes a GET request and decodes its JSON body, at most 1 MiB, into v.
func (c *Client) getJSON(ctx context.Context, op, path string, v any) error {
	resp, err := c.send(ctx, op, http.MethodGet, path, "application/json", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return c.decodeJSON(ctx, op, resp.Body, v)
}

// decodeJSON decodes a JSON answer of at most 1 MiB into v. Bodies are
// read to their end on success, so the connection is reused; after an error
// they are read no further here, since a stalled body could block until
// the context ends (Close reads a short rest of known length, see
// watchedBody). The decoder's error, which may quote the body, is
// scrubbed.
func (c *Client) decodeJSON(ctx context.Context, op string, body io.Reader, v any) error {
	rr := &recordingReader{r: io.LimitReader(body, maxJSONBody)}
	dec := json.NewDecoder(rr)
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		if rr.err != nil {
			return fmt.Errorf("%s: %w", op, c.transportError(ctx, nil, true, rr.err))
		}
		return fmt.Errorf("%s: %w: %w", op, ErrMalformedResponse, c.red.scrubError(err, maxNetError))
	}
	_, _ = io.CopyN(io.Discard, body, maxDrain) // a trailing newline, usually
	return nil
}
