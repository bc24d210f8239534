package store

import (
	"context"
	"errors"
	"net/http"
	"testing"
)

// TestStreamHangUpIsNetwork: a broker that takes the connection and closes
// it without answering cannot be reached (network), like a refused
// connection and like every other route; only an answered stream that
// stops is eof.
func TestStreamHangUpIsNetwork(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) { hangUp(w) })
	c := newTestClient(t, srv.URL, ClientOptions{})
	_, err := collect(t, c, context.Background(), streamConfig{})
	var ne *NetError
	if !errors.As(err, &ne) || errors.Is(err, ErrStreamEnded) || syncReason(err) != SyncReasonNetwork {
		t.Fatalf("hang-up before any answer: %v (reason %s), want a network error", err, syncReason(err))
	}
}
