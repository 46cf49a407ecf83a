package stability

import (
	"context"
	"errors"
)

// StableImage makes one POST /v2beta/stable-image/{service} attempt.
// TODO(v2beta client): being written.
func (c *Client) StableImage(ctx context.Context, service string, fields []Field, sink Sink) ([]Artifact, error) {
	return nil, errors.New("stable image: not implemented yet")
}
