package broker

import (
	"bytes"
	"fmt"
	"testing"
)

// usageBody is a /v1/usage answer of n reports of four limits each, shaped
// like the broker's (about 1.25 kB a report).
func usageBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"generatedAt":1795751800000,"reports":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		p := []string{"anthropic", "openai-codex", "google-gemini-cli", "github-copilot"}[i%4]
		fmt.Fprintf(&b, `{"provider":%q,"fetchedAt":1795751800000,"metadata":{"email":"user%d@example.com","accountId":"acct-%d","endpoint":"https://api.example.invalid/usage"},"limits":[`, p, i, i)
		for j, w := range []string{"5h", "7d", "7d-opus", "30d"} {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":"%s:%s","label":"%s","scope":{"provider":%q,"windowId":%q,"shared":true},"window":{"id":%q,"label":%q,"durationMs":18000000,"resetsAt":1795760000000},"amount":{"used":%d,"limit":100,"remaining":%d,"usedFraction":0.%02d,"remainingFraction":0.5,"unit":"percent"},"status":"ok"}`,
				p, w, w, p, w, w, w, (i+j)%100, 100-(i+j)%100, (i+j)%100)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// BenchmarkDecodeUsage is one /v1/usage answer decoded, at 10k and 50k
// reports (the default --broker.max-usage-bytes is sized for 50k). The
// decoder keeps nothing from one answer to the next, so a repeated answer
// costs what a fresh one does.
func BenchmarkDecodeUsage(b *testing.B) {
	for _, n := range []int{10000, 50000} {
		b.Run(fmt.Sprintf("reports=%dk", n/1000), func(b *testing.B) {
			body := usageBody(n)
			if len(body) > DefaultMaxUsageBytes {
				b.Fatalf("%d reports are %d bytes, over the default limit", n, len(body))
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := DecodeUsage(body)
				if err != nil || len(r.Reports) != n {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(body))/1e6, "MB/answer")
		})
	}
}
