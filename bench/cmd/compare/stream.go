package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
)

// streamArgs: no usage, and no periodic broker requests inside a window.
var streamArgs = []string{"--no-collector.usage", "--monitor.probe-interval=1h", "--collector.disabled.interval=1h",
	"--broker.max-frame-bytes=134217728"}

// streamSide is one exporter following its own fake broker.
type streamSide struct {
	*side
	f         *fixture
	e         *harness.Exporter
	templates [][]byte // SSE event bytes of one real pass, "event: entry\ndata: …\n\n"
	gen       int64    // the last generation sent
	seq       int      // deltas built so far (makes every rotation new)
}

func streamPhase(ctx context.Context, o options, sides [2]*side, t *table) error {
	var ss [2]*streamSide
	var stop cleanup
	defer stop.run()
	for i, sd := range sides {
		harness.Logf("stream: %s, fake broker with %d credentials", sd.name, o.n)
		s := &streamSide{side: sd, f: newFixture(o.n, false)}
		stop.add(s.f.broker.Close)
		ss[i] = s
		if err := s.record(ctx); err != nil {
			return err
		}
		for s.f.broker.StreamConnections() > 0 { // the recording stream is gone: feeds reach one client
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(10 * time.Millisecond)
		}
		e, err := sd.start(ctx, s.f, nil, streamArgs...)
		if err != nil {
			return err
		}
		s.e = e
		stop.add(e.Stop)
		s.gen = s.f.broker.Generation()
		if err := s.reached(ctx, s.gen); err != nil {
			return err
		}
	}

	// Broker passes (see pass), one uncounted first on each side: the
	// first after the snapshot costs more.
	for _, s := range ss {
		if _, _, err := s.measure(ctx, s.pass); err != nil {
			return err
		}
	}
	var pass [2][]time.Duration
	for r := range o.passes {
		for _, i := range order(r) {
			s := ss[i]
			cpu, _, err := s.measure(ctx, s.pass)
			if err != nil {
				return err
			}
			pass[i] = append(pass[i], cpu)
			harness.Logf("stream: %s pass %d: %s CPU", s.name, r+1, cpu.Round(time.Millisecond))
		}
	}
	t.add(row{id: "b", what: fmt.Sprintf("exporter CPU per %s-entry broker pass, median of %d", count(o.n), o.passes),
		bound: "≤ 1.3×", base: ms(harness.Median(pass[0])), head: ms(harness.Median(pass[1])), unit: "ms", limit: 1.3})

	// Deltas: after the passes (the feeds' generations run ahead of the
	// brokers' own). One warm-up feed per side; the base's sets M.
	m := 2000
	var per time.Duration
	for i, s := range ss {
		cpu, _, err := s.feed(ctx, m)
		if err != nil {
			return err
		}
		if i == 0 {
			per = cpu / time.Duration(m)
		}
	}
	m = int(min(max(float64(o.deltaCPU)/float64(max(per, 1)), 2000), 500000))
	harness.Logf("stream: %s CPU per delta in the warm-up, M = %d", per, m)
	var cpuPer, wallPer [2][]time.Duration
	for r := range o.deltaRounds {
		for _, i := range order(r) {
			cpu, wall, err := ss[i].feed(ctx, m)
			if err != nil {
				return err
			}
			cpuPer[i] = append(cpuPer[i], cpu/time.Duration(m))
			wallPer[i] = append(wallPer[i], wall/time.Duration(m))
			harness.Logf("stream: %s feed %d of %d deltas: %s CPU, %s wall", ss[i].name, r+1, m,
				cpu.Round(time.Millisecond), wall.Round(time.Millisecond))
		}
	}
	what := fmt.Sprintf("per stream delta through the binary, %s credentials, feeds of %d, median of %d", count(o.n), m, o.deltaRounds)
	t.add(row{id: "a", what: "exporter CPU " + what, bound: "≤ 1.3×",
		base: us(harness.Median(cpuPer[0])), head: us(harness.Median(cpuPer[1])), unit: "µs", limit: 1.3})
	t.add(row{id: "a", what: "wall time " + what, bound: "(report)",
		base: us(harness.Median(wallPer[0])), head: us(harness.Median(wallPer[1])), unit: "µs"})
	return nil
}

// measure waits for the exporter to be quiet, runs the work prepare
// returns (which makes the broker send generation want) and returns the
// CPU and wall time it cost the exporter (see busy). The generation is read from
// /metrics after the window; a window that closed before the exporter
// held it (the broker took longer than settle to start sending) is
// measured again, up to three times.
func (s *streamSide) measure(ctx context.Context, prepare func() (work func(), want int64)) (time.Duration, time.Duration, error) {
	for range 3 {
		work, want := prepare()
		if _, _, err := busy(ctx, s.e, nil); err != nil {
			return 0, 0, err
		}
		cpu, wall, err := busy(ctx, s.e, work)
		if err != nil {
			return 0, 0, err
		}
		v, err := s.e.Metric(ctx, "authbroker_snapshot_generation ")
		if err != nil {
			return 0, 0, err
		}
		if int64(v) >= want {
			return cpu, wall, nil
		}
		harness.Logf("stream: %s: the window closed at generation %d before %d; again", s.name, int64(v), want)
		if err := s.reached(ctx, want); err != nil {
			return 0, 0, err
		}
	}
	return 0, 0, fmt.Errorf("%s: three windows closed before the exporter had the frames", s.name)
}

// pass bumps the broker's generation without a change: it re-sends all n
// OAuth entries (rotatesInMs moved).
func (s *streamSide) pass() (func(), int64) {
	return s.f.broker.Bump, s.f.broker.Generation() + 1
}

// feed writes k rotation frames to the stream in one go.
func (s *streamSide) feed(ctx context.Context, k int) (time.Duration, time.Duration, error) {
	return s.measure(ctx, func() (func(), int64) {
		raw, last := s.build(k)
		return func() { s.f.broker.SendRaw(raw) }, last
	})
}

// reached checks that the exporter's mirror holds generation gen.
func (s *streamSide) reached(ctx context.Context, gen int64) error {
	deadline := time.Now().Add(time.Minute)
	for {
		v, err := s.e.Metric(ctx, "authbroker_snapshot_generation ")
		if err != nil {
			return err
		}
		if int64(v) >= gen {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: generation %d, want %d: frames were not applied", s.name, int64(v), gen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// record reads one pass from the stream, as the broker writes it: after a
// content-free bump it re-sends every OAuth entry, n frames.
func (s *streamSide) record(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	b := s.f.broker
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+"/v1/snapshot/stream", nil)
	req.Header.Set("Authorization", "Bearer "+b.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stream: %s", resp.Status)
	}
	r := bufio.NewReaderSize(resp.Body, 1<<20)
	next := func() ([]byte, error) {
		var ev []byte
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return nil, err
			}
			if len(line) == 1 && len(ev) > 0 {
				return append(ev, '\n'), nil
			}
			if len(line) > 1 {
				ev = append(ev, line...)
			}
		}
	}
	first, err := next()
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(first, []byte("event: snapshot\n")) {
		return fmt.Errorf("first event is not a snapshot: %.40q", first)
	}
	time.Sleep(5 * time.Millisecond) // serverNowMs moves, so every rotatesInMs does
	b.Bump()
	for len(s.templates) < len(s.f.ids) {
		ev, err := next()
		if err != nil {
			return fmt.Errorf("recording the pass: %w", err)
		}
		if bytes.HasPrefix(ev, []byte("event: entry\n")) {
			s.templates = append(s.templates, ev)
		}
	}
	return nil
}

var (
	genKey     = []byte(`"generation":`)
	accessKey  = []byte(`"access":"`)
	expiresKey = []byte(`"expires":`)
)

// build returns k entry frames, each a rotation (new access token, later
// expiry) of one credential, spread over the mirror, with generations
// counting up from the last one sent; and the last generation.
func (s *streamSide) build(k int) ([]byte, int64) {
	out := make([]byte, 0, k*(len(s.templates[0])+16))
	for range k {
		s.seq++
		s.gen++
		out = appendRotation(out, s.templates[(s.seq*7919)%len(s.templates)], s.gen, s.seq)
	}
	return out, s.gen
}

// appendRotation copies template t with its generation, access token and
// expiry replaced; each key occurs once in an entry frame, in this order.
func appendRotation(out, t []byte, gen int64, seq int) []byte {
	i := bytes.Index(t, genKey) + len(genKey)
	j := i + bytes.IndexAny(t[i:], ",}")
	out = append(out, t[:i]...)
	out = strconv.AppendInt(out, gen, 10)
	t = t[j:]
	i = bytes.Index(t, accessKey) + len(accessKey)
	j = i + bytes.IndexByte(t[i:], '"')
	out = append(out, t[:i]...)
	out = append(out, "rotated-"...)
	out = strconv.AppendInt(out, int64(seq), 10)
	t = t[j:]
	i = bytes.Index(t, expiresKey) + len(expiresKey)
	j = i + bytes.IndexAny(t[i:], ",}")
	exp, _ := strconv.ParseInt(string(t[i:j]), 10, 64)
	out = append(out, t[:i]...)
	out = strconv.AppendInt(out, exp+int64(seq)*1000, 10)
	return append(out, t[j:]...)
}

// count is n the way the rows name it: 10000 → "10k".
func count(n int) string {
	if n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}
