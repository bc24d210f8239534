package testkit

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// The mirror benchmarks use frames shaped like the broker's (the 18.2.3
// keys, a 2 KB-ish access token is not needed: the token is only hashed).
// Sizes are credentials in the mirror when the frame arrives.

var BenchProviders = []string{"anthropic", "openai-codex", "google-gemini-cli", "github-copilot"}

const BenchRefresher = `{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":42275}`

func BenchEntryJSON(buf *bytes.Buffer, id int, access string) {
	fmt.Fprintf(buf, `{"id":%d,"provider":%q,"credential":{"type":"oauth","access":%q,"refresh":"__remote__","expires":1795755013000,"email":"user%d@example.com","accountId":"acct-%d"},"identityKey":"email:user%d@example.com","rotatesInMs":3300000}`,
		id, BenchProviders[id%len(BenchProviders)], access, id, id, id)
}

func BenchSnapshotFrame(n int, gen int64) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `{"kind":"snapshot","generation":%d,"generatedAt":1795751762512,"serverNowMs":1795751762512,"refresher":%s,"credentials":[`, gen, BenchRefresher)
	for i := 1; i <= n; i++ {
		if i > 1 {
			buf.WriteByte(',')
		}
		BenchEntryJSON(&buf, i, "access-"+strconv.Itoa(i))
	}
	buf.WriteString("]}")
	return buf.Bytes()
}

func BenchEntryFrame(id int, gen int64, access string) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `{"kind":"entry","generation":%d,"serverNowMs":1795751777704,"refresher":%s,"entry":`, gen, BenchRefresher)
	BenchEntryJSON(&buf, id, access)
	buf.WriteByte('}')
	return buf.Bytes()
}

// BenchEntryFrames returns frames that rotate the token of ids spread over
// the whole mirror; consecutive passes alternate the token, so every
// applied frame is a real rotation.
func BenchEntryFrames(n int, gen int64) [][]byte {
	const k = 1024
	out := make([][]byte, 0, 2*k)
	for pass := range 2 {
		for j := range k {
			id := 1 + (j*7919)%n
			out = append(out, BenchEntryFrame(id, gen, fmt.Sprintf("rotated-%d-%d", pass, id)))
		}
	}
	return out
}

// PipeTransport answers the stream request with a body the benchmark
// writes to, so the whole client path (the event reader included) runs
// without a socket.
type PipeTransport struct{ Body io.ReadCloser }

func (t *PipeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"text/event-stream"}},
		Body: t.Body, Request: req}, nil
}

func SSEBytes(kind string, data []byte) []byte {
	out := make([]byte, 0, len(data)+32)
	out = append(out, "event: "+kind+"\ndata: "...)
	out = append(out, data...)
	return append(out, "\n\n"...)
}
