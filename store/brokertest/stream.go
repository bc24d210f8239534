package brokertest

import (
	"bytes"
	"net/http"
	"time"
)

type cmdKind int

const (
	cmdRaw cmdKind = iota
	cmdCut
)

type streamCmd struct {
	kind cmdKind
	raw  []byte
	done chan struct{}
}

// streamConn is one open /v1/snapshot/stream; its handler goroutine owns
// the ResponseWriter, so tests talk to it through cmds.
type streamConn struct {
	cmds chan streamCmd
	gone chan struct{} // closed when the handler returns
}

// do hands a command to the stream's goroutine and waits until it has
// been carried out or the stream is gone.
func (c *streamConn) do(kind cmdKind, raw []byte) {
	cmd := streamCmd{kind: kind, raw: raw, done: make(chan struct{})}
	select {
	case c.cmds <- cmd:
	case <-c.gone:
		return
	}
	select {
	case <-cmd.done:
	case <-c.gone:
	}
}

func sseEvent(kind string, body any) []byte {
	var buf bytes.Buffer
	buf.WriteString("event: ")
	buf.WriteString(kind)
	buf.WriteString("\ndata: ")
	buf.Write(mustJSON(body))
	buf.WriteString("\n\n")
	return buf.Bytes()
}

// serveStream is GET /v1/snapshot/stream: a snapshot frame, then per
// connection the fingerprint diff of docs/broker-protocol.md §6.3 on every generation change.
func (b *Broker) serveStream(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	caps := meterScopes(r)
	b.mu.Lock()
	epoch := b.epoch
	snap := b.buildLocked(caps)
	changed := b.changed
	b.mu.Unlock()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Vary", capabilitiesHeader)
	w.WriteHeader(http.StatusOK)

	write := func(p []byte) bool {
		if _, err := w.Write(p); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	if !write(sseEvent("snapshot", snap.response(true))) {
		return
	}
	// Per-connection memory of what was sent: the fingerprint (the entry's
	// JSON) by id, and the ids in first-sent order (a JS Map's order),
	// which is the order removed frames go out in.
	fps := make(map[int64]string, len(snap.ids))
	order := append([]int64(nil), snap.ids...)
	for i, id := range snap.ids {
		fps[id] = string(snap.entries[i])
	}

	conn := &streamConn{cmds: make(chan streamCmd), gone: make(chan struct{})}
	b.mu.Lock()
	if b.epoch != epoch {
		b.mu.Unlock()
		panic(http.ErrAbortHandler)
	}
	b.streams[conn] = struct{}{}
	close(b.streamsChanged)
	b.streamsChanged = make(chan struct{})
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.streams, conn)
		close(b.streamsChanged)
		b.streamsChanged = make(chan struct{})
		b.mu.Unlock()
		close(conn.gone)
	}()

	var tick <-chan time.Time
	if b.keepalive > 0 {
		t := time.NewTicker(b.keepalive)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-changed:
			b.mu.Lock()
			if b.epoch != epoch {
				b.mu.Unlock()
				panic(http.ErrAbortHandler)
			}
			// Bumps that land while this pass is written close the new
			// channel, which makes exactly one more pass: coalescing.
			snap = b.buildLocked(caps)
			changed = b.changed
			b.mu.Unlock()
			var out bytes.Buffer
			seen := make(map[int64]bool, len(snap.ids))
			for i, id := range snap.ids {
				seen[id] = true
				fp := string(snap.entries[i])
				old, known := fps[id]
				if known && old == fp {
					continue
				}
				if !known {
					order = append(order, id)
				}
				fps[id] = fp
				out.Write(sseEvent("entry", object{
					{"kind", "entry"}, {"generation", snap.generation}, {"serverNowMs", snap.serverNow},
					{"refresher", snap.refresher}, {"entry", snap.entries[i]},
				}))
			}
			kept := order[:0]
			for _, id := range order {
				if seen[id] {
					kept = append(kept, id)
					continue
				}
				delete(fps, id)
				out.Write(sseEvent("removed", object{
					{"kind", "removed"}, {"generation", snap.generation}, {"serverNowMs", snap.serverNow},
					{"refresher", snap.refresher}, {"id", id},
				}))
			}
			order = kept
			if out.Len() > 0 && !write(out.Bytes()) {
				return
			}
		case cmd := <-conn.cmds:
			if cmd.kind == cmdCut {
				close(cmd.done)
				panic(http.ErrAbortHandler)
			}
			ok := write(cmd.raw)
			close(cmd.done)
			if !ok {
				return
			}
		case <-tick:
			if !write([]byte(": keepalive\n\n")) {
				return
			}
		case <-r.Context().Done():
			return
		case <-b.done:
			panic(http.ErrAbortHandler)
		}
	}
}
