package store

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// BenchmarkSnapshotDuringDeltaStorm: scrapes (Snapshot of the mirror) run
// in parallel with one writer applying entry deltas as fast as it can. The
// writer's rate is reported too: readers must not starve it.
func BenchmarkSnapshotDuringDeltaStorm(b *testing.B) {
	for _, n := range benchStoreSizes {
		b.Run("creds="+benchSize(n), func(b *testing.B) {
			s := benchStore(b, n)
			raw := benchEntryFrames(n, 7)
			frames := make([]*broker.StreamFrame, len(raw))
			for i, r := range raw {
				f, err := new(broker.FrameDecoder).Decode(r, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				frames[i] = f
			}
			var stop atomic.Bool
			var applied atomic.Int64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					// Entries are immutable once published: apply a fresh copy.
					f := *frames[i%len(frames)]
					e := *f.Entry
					f.Entry = &e
					s.applyFrame(&f)
					applied.Add(1)
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if v := s.Snapshot(); len(v.Entries) != n {
						b.Errorf("%d entries", len(v.Entries))
						return
					}
				}
			})
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
			b.ReportMetric(float64(applied.Load())/b.Elapsed().Seconds(), "deltas/s")
		})
	}
}
