package stability

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// echoKey is a key of the live API's length whose digits make valid seeds
// and balances, so that numbers can carry a piece of it too.
const echoKey = "sk-Echo-1234567890-qwertyuiopASDFGHJKLzxcvbnm0Q9W8E"

// keyPiece returns the first run of pieceLen bytes of echoKey found in s,
// or "".
func keyPiece(s string) string {
	for i := 0; i+pieceLen <= len(echoKey); i++ {
		if p := echoKey[i : i+pieceLen]; strings.Contains(s, p) {
			return p
		}
	}
	return ""
}

// checkNoPiece fails the test when any string in what holds a piece of the
// key.
func checkNoPiece(t *testing.T, what string, values ...string) {
	t.Helper()
	for _, v := range values {
		if p := keyPiece(v); p != "" {
			t.Errorf("%s %q holds %q, a piece of the API key", what, v, p)
		}
	}
}

// errorTexts returns the text of err and of every error in its chain, and
// the fields of the typed errors in it.
func errorTexts(err error) []string {
	var out []string
	for e := err; e != nil; {
		out = append(out, e.Error())
		switch x := e.(type) {
		case *APIError:
			out = append(out, x.ID, x.Name, x.Message)
		case *FinishReasonError:
			out = append(out, x.RequestID)
		}
		if u, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e2 := range u.Unwrap() {
				out = append(out, errorTexts(e2)...)
			}
			break
		}
		e = errors.Unwrap(e)
	}
	return out
}

// artifactTexts returns every field of the artifacts as text.
func artifactTexts(arts []Artifact) []string {
	var out []string
	for _, a := range arts {
		out = append(out, fmt.Sprint(a.Seed), a.FinishReason, a.RequestID, a.Format)
	}
	return out
}

// echo sets every header the client reads to the Authorization value the
// request carried: what a hostile server, or one that reflects requests,
// does.
func echo(w http.ResponseWriter, r *http.Request) string {
	auth := r.Header.Get("Authorization")
	for _, h := range []string{"Seed", "Finish-Reason", "X-Request-Id", "Retry-After", "Content-Type"} {
		w.Header().Set(h, auth)
	}
	return auth
}

func TestNoKeyPieceFromAnEchoingServer(t *testing.T) {
	png := fakeImage("png", 1, 3000)
	b64 := base64.StdEncoding.EncodeToString(png)
	digits := echoKey[8:18] // "1234567890": a valid seed, made of the key
	input := writeFile(t, "in.png", fakeImage("png", 2, 1000))
	v1 := func(samples int) func(c *Client) ([]Artifact, error) {
		return func(c *Client) ([]Artifact, error) {
			return c.TextToImage(t.Context(), "eng", TextToImageRequest{Samples: samples}, newMemSink())
		}
	}
	stable := func(c *Client) ([]Artifact, error) {
		return c.StableImage(t.Context(), "generate/core", []Field{{Name: "prompt", Value: "a cat"}}, newMemSink())
	}
	result := func(c *Client) ([]Artifact, error) {
		arts, _, err := c.Result(t.Context(), genID, newMemSink())
		return arts, err
	}
	submit := func(c *Client) ([]Artifact, error) {
		id, err := c.Submit(t.Context(), "upscale/creative", []Field{{Name: "image", Value: input}, {Name: "prompt", Value: "p"}})
		return []Artifact{{RequestID: id}}, err
	}
	balance := func(c *Client) ([]Artifact, error) {
		v, err := c.Balance(t.Context())
		return []Artifact{{FinishReason: v.String()}}, err
	}
	account := func(c *Client) ([]Artifact, error) {
		a, err := c.Account(t.Context())
		return []Artifact{{FinishReason: fmt.Sprintf("%+v", a)}}, err
	}
	engines := func(c *Client) ([]Artifact, error) {
		es, err := c.Engines(t.Context())
		return []Artifact{{FinishReason: fmt.Sprintf("%+v", es)}}, err
	}
	errorBody := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			auth := echo(w, r)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"id":%q,"name":%q,"message":%q,"errors":[%q,{"detail":%q}]}`, auth, auth, auth, auth, auth)
		}
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		call    func(c *Client) ([]Artifact, error)
		wantErr bool
	}{
		{"v1 png: every header echoes", func(w http.ResponseWriter, r *http.Request) {
			echo(w, r)
			w.Header().Set("Content-Type", "image/png")
			w.Write(png)
		}, v1(1), true},
		{"v1 png: finish reason echoes", func(w http.ResponseWriter, r *http.Request) {
			echo(w, r)
			w.Header().Set("Content-Type", "image/png")
			w.Header().Set("Seed", "7")
			w.Write(png)
		}, v1(1), true},
		{"v1 png: a seed made of the key", func(w http.ResponseWriter, r *http.Request) {
			echo(w, r)
			w.Header().Set("Content-Type", "image/png")
			w.Header().Set("Seed", digits)
			w.Header().Set("Finish-Reason", "SUCCESS")
			w.Write(png)
		}, v1(1), true},
		{"v1 png: only the request id echoes the key", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Request-Id", echoKey)
			answerImage(w, "png", png, "7", "SUCCESS", "")
		}, v1(1), false},
		{"v1 png: content type echoes", func(w http.ResponseWriter, r *http.Request) {
			echo(w, r)
			w.Write(png)
		}, v1(1), true},
		{"v1 json: every field echoes", func(w http.ResponseWriter, r *http.Request) {
			auth := echo(w, r)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"artifacts":[{"base64":%q,"seed":1,"finishReason":%q},{"base64":%q,"seed":2,"finishReason":"SUCCESS"}]}`, b64, echoKey, b64)
			_ = auth
		}, v1(2), true},
		{"v1 json: a seed made of the key", func(w http.ResponseWriter, r *http.Request) {
			echo(w, r)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"artifacts":[{"base64":%q,"seed":%s,"finishReason":"SUCCESS"},{"base64":%q,"seed":2,"finishReason":"SUCCESS"}]}`, b64, digits, b64)
		}, v1(2), true},
		{"v1 json: the key as a repeated key", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			k := echoKey[3:]
			fmt.Fprintf(w, `{"artifacts":[{%q:1,%q:2}]}`, k, k)
		}, v1(2), true}, // unknown keys are skipped: the artifact fails without quoting them
		{"v1 json: the key as a number", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"artifacts":[{"seed":%s5e}]}`, digits)
		}, v1(2), true},
		{"400 body echoes", errorBody(400), v1(1), true},
		{"429 body and Retry-After echo", errorBody(429), stable, true},
		{"500 plain text echoes", func(w http.ResponseWriter, r *http.Request) {
			auth := echo(w, r)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(500)
			io.WriteString(w, strings.Repeat(auth+" \n\t", 3))
		}, result, true},
		{"stable image raw: every header echoes", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			echo(w, r)
			w.Header().Set("Content-Type", "image/png")
			w.Write(png)
		}, stable, true},
		{"stable image json: every field echoes", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			auth := echo(w, r)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"image":%q,"finish_reason":%q,"seed":1,"id":%q}`, b64, echoKey, auth)
		}, stable, true},
		{"result json: seed made of the key", func(w http.ResponseWriter, r *http.Request) {
			echo(w, r)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"image":%q,"finish_reason":"SUCCESS","seed":%s}`, b64, digits)
		}, result, true},
		{"result with the key as content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/"+echoKey)
			w.Write(png)
		}, result, true},
		{"submit: the key as the generation id", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			echo(w, r)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":%q}`, echoKey)
		}, submit, true},
		{"submit: the Authorization value as the generation id", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			auth := echo(w, r)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":%q}`, auth)
		}, submit, true},
		{"submit: the key in a broken body", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":%s}`, echoKey)
		}, submit, true},
		{"balance: the Authorization value as credits", func(w http.ResponseWriter, r *http.Request) {
			auth := echo(w, r)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"credits":%q}`, auth)
		}, balance, true},
		{"balance: credits made of the key", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"credits":%s}`, digits)
		}, balance, true},
		{"balance: credits made of the key, as a fraction", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"credits":0.000%s}`, digits)
		}, balance, true},
		{"balance: too large with the key's digits", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"credits":%se900}`, digits)
		}, balance, true},
		{"balance: error body echoes", errorBody(401), balance, true},
		{"account: every field echoes", func(w http.ResponseWriter, r *http.Request) {
			auth := echo(w, r)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":%q,"email":%q,"profile_picture":%q,"organizations":[{"id":%q,"name":%q,"role":%q}]}`, auth, auth, auth, auth, auth, auth)
		}, account, false},
		{"engines: every field echoes", func(w http.ResponseWriter, r *http.Request) {
			auth := echo(w, r)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `[{"id":%q,"name":%q,"description":%q,"type":%q}]`, auth, auth, auth, auth)
		}, engines, false},
		{"a status line echoes", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			buf.WriteString("HTTP/1.1 " + echoKey + " OK\r\n\r\n")
			buf.Flush()
		}, v1(1), true},
		{"a header line echoes", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			buf.WriteString("HTTP/1.1 200 OK\r\n" + r.Header.Get("Authorization") + "\r\n\r\n")
			buf.Flush()
		}, balance, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			c, err := NewClient(Options{BaseURL: srv.URL, APIKey: echoKey})
			if err != nil {
				t.Fatal(err)
			}
			arts, err := tt.call(c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want an error: %v", err, tt.wantErr)
			}
			checkNoPiece(t, "error text", errorTexts(err)...)
			checkNoPiece(t, "artifact field", artifactTexts(arts)...)
			if te, ok := errors.AsType[*TransportError](err); ok {
				checkNoPiece(t, "transport error cause", te.Err.Error())
			}
		})
	}
}

func TestRedactor(t *testing.T) {
	r := newRedactor(echoKey)
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"no key here", "no key here"},
		{"Bearer " + echoKey, "Bearer [redacted]"},
		{echoKey[5:13], "[redacted]"},                                       // exactly one piece
		{echoKey[5:12], echoKey[5:12]},                                      // seven bytes are not a piece
		{"x" + echoKey[:20] + "y" + echoKey[30:], "x[redacted]y[redacted]"}, // two runs
		{echoKey[10:30] + echoKey[10:30], "[redacted]"},                     // adjacent runs merge
	}
	for _, tt := range tests {
		if got := r.scrub(tt.in); got != tt.want {
			t.Errorf("scrub(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got, want := r.leaks(tt.in), tt.want != tt.in; got != want {
			t.Errorf("leaks(%q) = %v, want %v", tt.in, got, want)
		}
	}
	short := newRedactor("sk-abc")
	if got := short.clean("a sk-abc  b\tsk-ab", 64); got != "a [redacted] b sk-ab" {
		t.Errorf("clean with a short key = %q", got)
	}
	if got := newRedactor("").scrub("anything"); got != "anything" {
		t.Errorf("scrub without a key = %q", got)
	}
	// Collapsing whitespace must not join what the server split into a
	// piece that escapes.
	split := echoKey[:4] + " \n " + echoKey[4:16]
	if got := r.clean(split, 64); keyPiece(got) != "" {
		t.Errorf("clean(%q) = %q, holds a piece", split, got)
	}
	if got := r.quote(strings.Repeat("é", 100)); len(got) > maxQuoted+len(`"…"`)+2 {
		t.Errorf("quote of 200 bytes is %d bytes long", len(got))
	}
}

// TestRedactorPiecesCoverEveryRun checks scrub against its definition: no
// run of pieceLen bytes of the key survives, and nothing else changes.
func TestRedactorPiecesCoverEveryRun(t *testing.T) {
	r := newRedactor(echoKey)
	for i := 0; i < len(echoKey); i++ {
		for j := i + 1; j <= len(echoKey); j++ {
			in := "<" + echoKey[i:j] + ">"
			got := r.scrub(in)
			want := in
			if j-i >= pieceLen {
				want = "<[redacted]>"
			}
			if got != want {
				t.Fatalf("scrub(%q) = %q, want %q", in, got, want)
			}
		}
	}
	if !reflect.DeepEqual(newRedactor("sk-1234").pieces, map[string]struct{}(nil)) {
		t.Errorf("a key shorter than %d bytes has pieces", pieceLen)
	}
}
