package collector

import (
	"bufio"
	"io"
	"testing"

	"github.com/authbroker/authbroker_exporter/internal/identity"
)

// BenchmarkCapacity is the capacity collector's share of a scrape: the
// one pass over the credentials and their usage (the usage answer is the
// same store.Usage for the whole scrape, as the store hands it out).
func BenchmarkCapacity(b *testing.B) {
	for _, n := range benchSizes[:2] {
		b.Run("creds="+sizeName(n), func(b *testing.B) {
			src := newBenchSource(n, true)
			c := &capacityCollector{o: benchOptions(b, src, identity.Hashed)}
			s := newTextSink(bufio.NewWriter(io.Discard))
			b.ReportAllocs()
			for b.Loop() {
				c.write(s)
			}
		})
	}
}
