package stability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/cost"
)

// Account is the answer of GET /v1/user/account.
type Account struct {
	ID             string         `json:"id"`    // e.g. "user-1234"
	Email          string         `json:"email"` // "" when absent
	ProfilePicture string         `json:"profile_picture"`
	Organizations  []Organization `json:"organizations"` // nil when absent
}

// Organization is one organization membership of an Account.
type Organization struct {
	ID        string `json:"id"`   // e.g. "org-5678", the value of the Organization header
	Name      string `json:"name"` // display name
	Role      string `json:"role"` // e.g. "MEMBER"
	IsDefault bool   `json:"is_default"`
}

// EngineInfo is one entry of GET /v1/engines/list.
type EngineInfo struct {
	ID          string `json:"id"` // e.g. "stable-diffusion-xl-1024-v1-0"
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"` // AUDIO, CLASSIFICATION, PICTURE, STORAGE, TEXT or VIDEO
}

// Balance returns the credits left (GET /v1/user/balance). The API sends a
// float; it is converted to micro-credits rounding down (towards minus
// infinity), so a budget check never counts on credit the account lacks.
// Errors are as for TextToImage, wrapped with "balance"; a balance whose
// digits hold a piece of the API key is refused as malformed, since it
// would be printed.
func (c *Client) Balance(ctx context.Context) (cost.Credits, error) {
	const op = "balance"
	var b struct {
		Credits json.RawMessage `json:"credits"` // json.Number would also take "12"
	}
	if err := c.getJSON(ctx, op, "/v1/user/balance", &b); err != nil {
		return 0, err
	}
	switch {
	case len(b.Credits) == 0 || string(b.Credits) == "null":
		return 0, fmt.Errorf("%s: %w: no credits in the response", op, ErrMalformedResponse)
	case !validNumber(b.Credits):
		return 0, fmt.Errorf("%s: %w: credits %s is not a number", op, ErrMalformedResponse, c.clean(string(b.Credits), maxQuoted))
	}
	v, err := floorMicroCredits(string(b.Credits))
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s: %w: credits %s: %w", op, ErrMalformedResponse, c.clean(string(b.Credits), maxQuoted), err)
	case c.red.leaks(string(b.Credits)) || c.red.leaks(v.String()):
		return 0, fmt.Errorf("%s: %w: the credits hold a piece of the API key", op, ErrMalformedResponse)
	}
	return v, nil
}

// Account returns the user and their organizations (GET /v1/user/account),
// every text scrubbed of the API key (see Client.clean) and cut to 1 KiB.
// Errors are as for TextToImage, wrapped with "account".
func (c *Client) Account(ctx context.Context) (Account, error) {
	const op = "account"
	var a Account
	if err := c.getJSON(ctx, op, "/v1/user/account", &a); err != nil {
		return Account{}, err
	}
	if a.ID == "" {
		return Account{}, fmt.Errorf("%s: %w: no id in the response", op, ErrMalformedResponse)
	}
	for _, s := range []*string{&a.ID, &a.Email, &a.ProfilePicture} {
		*s = c.clean(*s, maxErrorMessage)
	}
	for i := range a.Organizations {
		o := &a.Organizations[i]
		for _, s := range []*string{&o.ID, &o.Name, &o.Role} {
			*s = c.clean(*s, maxErrorMessage)
		}
	}
	return a, nil
}

// Engines lists the engines the key may use (GET /v1/engines/list), in the
// API's order, every text scrubbed of the API key and cut to 1 KiB.
// Errors are as for TextToImage, wrapped with "engines".
func (c *Client) Engines(ctx context.Context) ([]EngineInfo, error) {
	const op = "engines"
	var es []EngineInfo
	if err := c.getJSON(ctx, op, "/v1/engines/list", &es); err != nil {
		return nil, err
	}
	for i := range es {
		e := &es[i]
		for _, s := range []*string{&e.ID, &e.Name, &e.Description, &e.Type} {
			*s = c.clean(*s, maxErrorMessage)
		}
	}
	return es, nil
}

// floorMicroCredits converts a JSON number in credits, such as
// "0.6336833840314097" or "1.5e-7", to micro-credits, rounding towards
// minus infinity. It works on the decimal digits, so no float rounding or
// formatting can add credit that is not there.
func floorMicroCredits(num string) (cost.Credits, error) {
	neg := strings.HasPrefix(num, "-")
	mant, exp := strings.TrimPrefix(num, "-"), 0
	if i := strings.IndexAny(mant, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(mant[i+1:], "+"))
		if err != nil || e < -1000 || e > 1000 {
			return 0, errors.New("exponent out of range")
		}
		mant, exp = mant[:i], e
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return 0, nil
	}
	// point is where the decimal point falls in digits once scaled by 10⁶.
	point := len(digits) - len(frac) + exp + 6
	switch {
	case point > 19:
		return 0, errors.New("too large")
	case point < 0:
		point = 0
	}
	var intPart, rest string
	if point >= len(digits) {
		intPart = digits + strings.Repeat("0", point-len(digits))
	} else {
		intPart, rest = digits[:point], digits[point:]
	}
	v := int64(0)
	if intPart != "" {
		var err error
		if v, err = strconv.ParseInt(intPart, 10, 64); err != nil {
			return 0, errors.New("too large")
		}
	}
	if neg {
		v = -v
		if strings.Trim(rest, "0") != "" {
			v-- // -0.0000015 floors to -0.000002
		}
	}
	return cost.Credits(v), nil
}
