package testkit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Recorded is one request a RecServer saw.
type Recorded struct {
	Method, Path, Query string
	Header              http.Header
	Body                string
}

// RecServer records every request and lets the test answer it; n counts
// requests from 1.
type RecServer struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []Recorded
	handle func(w http.ResponseWriter, r *http.Request, n int)
}

func NewRecServer(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int)) *RecServer {
	t.Helper()
	s := &RecServer{handle: handle}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, Recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b)})
		n := len(s.reqs)
		s.mu.Unlock()
		s.handle(w, r, n)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *RecServer) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Recorded(nil), s.reqs...)
}

func JSONReply(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func HangUp(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}
