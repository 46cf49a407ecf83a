package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batch-tool/batch/internal/sandbox"
)

// server is the sandbox API that `batch sandbox` serves, served from the
// bench's own process so the bench can count what reaches it: the TCP
// connections accepted and the time of every request.
type server struct {
	sb    *sandbox.Server
	hs    *http.Server
	url   string // http://127.0.0.1:PORT
	conns atomic.Int64
	done  chan error // what Serve returned

	mu    sync.Mutex
	sends []time.Time // arrival of every request, in arrival order
}

// startServer serves a sandbox with cfg on a free loopback port.
func startServer(cfg sandbox.Config) (*server, error) {
	sb, err := sandbox.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	s := &server{sb: sb, url: "http://" + ln.Addr().String(), done: make(chan error, 1)}
	s.hs = &http.Server{
		Handler:           http.HandlerFunc(s.serve),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	go func() { s.done <- s.hs.Serve(ln) }()
	return s, nil
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.mu.Lock()
	s.sends = append(s.sends, now)
	s.mu.Unlock()
	s.sb.ServeHTTP(w, r)
}

// serverStats is what a sandbox saw, read once its clients are done.
type serverStats struct {
	sandbox.Stats
	conns int64       // TCP connections accepted
	sends []time.Time // request arrivals in order
}

// stop closes the server, letting requests in flight finish for a few
// seconds, and returns what it saw.
func (s *server) stop() (serverStats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.hs.Shutdown(ctx)
	if err != nil {
		_ = s.hs.Close()
	}
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = serveErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := serverStats{Stats: s.sb.Stats(), conns: s.conns.Load(), sends: s.sends}
	if err != nil {
		return st, fmt.Errorf("sandbox: %w", err)
	}
	return st, nil
}
