package main

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// floorText is how much text the fixed task compresses: about what one
// scrape at 10k credentials writes.
const floorText = 14 << 20

// floor is the latency spread of a fixed, single-threaded task run alone
// on this machine at the scrapes' cadence: the same work each time, no
// allocation, no I/O. Whatever spread it shows is the machine's (a CPU
// that idles between runs comes back slower some of the time), and no
// scrape can be steadier than it.
type floor struct {
	every              time.Duration
	p50, p90, p99, max time.Duration
}

func (f floor) String() string {
	return fmt.Sprintf("machine floor (gzip of %d MiB of text, one every %v, alone): p50 %v, p90 %v, p99 %v, max %v; p99/p50 %.2f",
		floorText>>20, f.every, f.p50, f.p90, f.p99, f.max, float64(f.p99)/float64(f.p50))
}

// measureFloor runs the fixed task n times, one every `every`.
func measureFloor(ctx context.Context, n int, every time.Duration) (floor, error) {
	text := make([]byte, floorText)
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcdefghijklmnopqrstuvwxyz_{}=\",.0123456789\n"
	for i := range text {
		text[i] = alphabet[r.IntN(len(alphabet))]
	}
	zw, err := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	if err != nil {
		return floor{}, err
	}
	took := make([]time.Duration, 0, n)
	t := time.NewTicker(max(every, time.Millisecond))
	defer t.Stop()
	for range n {
		select {
		case <-ctx.Done():
			return floor{}, ctx.Err()
		case <-t.C:
		}
		start := time.Now()
		zw.Reset(io.Discard)
		zw.Write(text)
		zw.Close()
		took = append(took, time.Since(start))
	}
	return floor{every: every, p50: quantile(took, 0.5), p90: quantile(took, 0.9), p99: quantile(took, 0.99), max: quantile(took, 1)}, nil
}
