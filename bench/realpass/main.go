// Command realpass measures how long a real auth-broker takes to stream
// the pass that follows one change, at n credentials: the floor under the
// exporter's change → /metrics propagation, since the broker re-sends every
// OAuth entry on every generation bump.
//
//	eval "$(scripts/real-broker.sh start)"
//	go run ./bench/realpass -url "$URL" -token-file "$TOKEN_FILE" -n 10000
//	scripts/real-broker.sh stop
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
)

type frame struct {
	at       time.Time
	kind     string
	provider string
}

func main() {
	url := flag.String("url", "", "broker URL")
	tokenFile := flag.String("token-file", "", "bearer token file")
	n := flag.Int("n", 10000, "OAuth credentials to seed")
	samples := flag.Int("samples", 5, "changes to time")
	flag.Parse()
	raw, err := os.ReadFile(*tokenFile)
	if err != nil {
		fail(err)
	}
	token := strings.TrimSpace(string(raw))
	post := func(body any) error {
		return harness.PostJSON(context.Background(), *url+"/v1/credential", token, body)
	}

	start := time.Now()
	if err := harness.SeedOAuth(context.Background(), *url, token, *n, "realpass"); err != nil {
		fail(err)
	}
	fmt.Printf("seeded %d OAuth credentials in %s\n", *n, time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, *url+"/v1/snapshot/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail(err)
	}
	if resp.StatusCode != http.StatusOK {
		fail(fmt.Errorf("stream: HTTP %d", resp.StatusCode))
	}
	frames := make(chan frame, 1<<20)
	go readFrames(resp.Body, frames)
	first := <-frames
	if first.kind != "snapshot" {
		fail(fmt.Errorf("first frame %q", first.kind))
	}
	quiet(frames, time.Second)

	var toFrame, toEnd []time.Duration
	var sizes []int
	for s := range *samples {
		t0 := time.Now()
		if err := post(map[string]any{"provider": "openai", "credential": map[string]any{"type": "api_key", "key": fmt.Sprintf("realpass-key-%d-%d", time.Now().UnixNano(), s)}}); err != nil {
			fail(err)
		}
		got := pass(frames)
		i := slices.IndexFunc(got, func(f frame) bool { return f.provider == "openai" })
		if i < 0 {
			fail(fmt.Errorf("sample %d: no frame for the new key among %d", s, len(got)))
		}
		toFrame = append(toFrame, got[i].at.Sub(t0))
		toEnd = append(toEnd, got[len(got)-1].at.Sub(t0))
		sizes = append(sizes, len(got))
	}
	fmt.Printf("change -> its entry frame: %s\nchange -> last frame of the pass: %s\nframes per pass: %v\n",
		summary(toFrame), summary(toEnd), sizes)
}

// pass collects the frames of one pass: from the first (however long the
// broker takes to start it) until none arrives for a second.
func pass(frames <-chan frame) []frame {
	select {
	case f := <-frames:
		return append([]frame{f}, quiet(frames, time.Second)...)
	case <-time.After(5 * time.Minute):
		return nil
	}
}

// quiet collects frames until none arrives for d.
func quiet(frames <-chan frame, d time.Duration) []frame {
	var got []frame
	for {
		select {
		case f := <-frames:
			got = append(got, f)
		case <-time.After(d):
			return got
		}
	}
}

func readFrames(body io.Reader, out chan<- frame) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if len(data) > 0 {
				var f struct {
					Kind  string `json:"kind"`
					Entry *struct {
						Provider string `json:"provider"`
					} `json:"entry"`
				}
				json.Unmarshal(data, &f)
				fr := frame{at: time.Now(), kind: f.Kind}
				if f.Entry != nil {
					fr.provider = f.Entry.Provider
				}
				out <- fr
			}
			data = data[:0]
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))...)
		}
	}
}

func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("min %s, median %s, max %s (%d samples)", s[0].Round(time.Millisecond),
		s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "realpass:", err)
	os.Exit(1)
}
