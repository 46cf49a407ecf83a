package stability

import (
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
)

func TestFloorMicroCredits(t *testing.T) {
	tests := []struct {
		in      string
		want    cost.Credits
		wantErr bool
	}{
		{"0", 0, false},
		{"0.0", 0, false},
		{"-0", 0, false},
		{"0.6336833840314097", 633683, false},
		{"0.0000009", 0, false},
		{"0.000001", 1, false},
		{"0.9999999999999999", 999999, false}, // a float would print 1
		{"1000", 1000 * cost.Credit, false},
		{"1000.5", 1000*cost.Credit + cost.Credit/2, false},
		{"12.3456789", 12345678, false},
		{"1e3", 1000 * cost.Credit, false},
		{"1.5E-7", 0, false},
		{"1.5e-6", 1, false},
		{"2.5e+2", 250 * cost.Credit, false},
		{"0.07", 70000, false},  // 0.07 as float64 is 0.07000000000000000666
		{"0.29", 290000, false}, // 0.29*1e6 as float64 is 289999.99999999994
		{"-0.0000015", -2, false},
		{"-2.5", -2500000, false},
		{"-2.0000000", -2 * cost.Credit, false},
		{"9223372036854.775807", 9223372036854775807, false},
		{"9223372036854.775808", 0, true},
		{"1e30", 0, true},
		{"1e99999", 0, true},
		{"0e99999", 0, true},
	}
	for _, tt := range tests {
		got, err := floorMicroCredits(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("floorMicroCredits(%q) = %v, %v, want %v, error %v", tt.in, int64(got), err, int64(tt.want), tt.wantErr)
		}
	}
}

func TestBalance(t *testing.T) {
	tests := []struct {
		body    string
		want    cost.Credits
		wantErr string
	}{
		{`{"credits": 0.6336833840314097}`, 633683, ""},
		{`{"credits":1500}` + "\n", 1500 * cost.Credit, ""},
		{`{"credits":0.29}`, 290000, ""},
		{`{}`, 0, "balance: malformed response: no credits"},
		{`{"credits":null}`, 0, "balance: malformed response: no credits"},
		{`{"credits":"12"}`, 0, `balance: malformed response: credits "12" is not a number`},
		{`{"credits":1e400}`, 0, "balance: malformed response: credits 1e400: too large"},
		{`not json`, 0, "balance: malformed response"},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			var path string
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				path = r.Method + " " + r.URL.Path
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, tt.body)
			})
			got, err := c.Balance(t.Context())
			if path != "GET /v1/user/balance" {
				t.Errorf("request = %q, want GET /v1/user/balance", path)
			}
			if tt.wantErr != "" {
				if !errors.Is(err, ErrMalformedResponse) || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("Balance() error = %v, want ErrMalformedResponse starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Balance() = %v, %v, want %v", got, err, tt.want)
			}
		})
	}
}

func TestAccount(t *testing.T) {
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/user/account" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"id":"user-1234","email":"a@example.com","profile_picture":"https://x/p.png",
			"organizations":[{"id":"org-5678","name":"Acme","role":"MEMBER","is_default":true},
			                 {"id":"org-9","name":"Other","role":"OWNER","is_default":false}]}`)
	})
	got, err := c.Account(t.Context())
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	want := Account{ID: "user-1234", Email: "a@example.com", ProfilePicture: "https://x/p.png", Organizations: []Organization{
		{ID: "org-5678", Name: "Acme", Role: "MEMBER", IsDefault: true},
		{ID: "org-9", Name: "Other", Role: "OWNER"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Account() = %+v, want %+v", got, want)
	}

	c = newTestClient(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"email":"x"}`) })
	if _, err := c.Account(t.Context()); !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("Account() without id: error = %v, want ErrMalformedResponse", err)
	}
}

func TestEngines(t *testing.T) {
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/engines/list" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `[{"id":"stable-diffusion-xl-1024-v1-0","name":"Stable Diffusion XL v1.0","description":"Stability-AI Stable Diffusion XL v1.0","type":"PICTURE"},
			{"id":"esrgan-v1-x2plus","name":"Real-ESRGAN x2","description":"","type":"PICTURE"}]`)
	})
	got, err := c.Engines(t.Context())
	if err != nil {
		t.Fatalf("Engines: %v", err)
	}
	want := []EngineInfo{
		{ID: "stable-diffusion-xl-1024-v1-0", Name: "Stable Diffusion XL v1.0", Description: "Stability-AI Stable Diffusion XL v1.0", Type: "PICTURE"},
		{ID: "esrgan-v1-x2plus", Name: "Real-ESRGAN x2", Type: "PICTURE"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Engines() = %+v, want %+v", got, want)
	}

	// The example code's {engines:[…]} shape is not what the API sends.
	c = newTestClient(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"engines":[]}`) })
	if _, err := c.Engines(t.Context()); !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("Engines() of an object: error = %v, want ErrMalformedResponse", err)
	}
}

func TestGetErrorsNameTheOperation(t *testing.T) {
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"id":"1","name":"unauthorized","message":"missing authorization header"}`)
	})
	for _, tt := range []struct {
		op   string
		call func() error
	}{
		{"balance", func() error { _, err := c.Balance(t.Context()); return err }},
		{"account", func() error { _, err := c.Account(t.Context()); return err }},
		{"engines", func() error { _, err := c.Engines(t.Context()); return err }},
	} {
		err := tt.call()
		want := tt.op + ": image API: 401 Unauthorized: unauthorized: missing authorization header"
		if err == nil || err.Error() != want {
			t.Errorf("%s error = %v, want %q", tt.op, err, want)
		}
		checkNoSecret(t, err)
	}
}
