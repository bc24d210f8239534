package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// blockingGatherer counts gathers; the first one is held until released.
type blockingGatherer struct {
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (b *blockingGatherer) Gather() ([]*dto.MetricFamily, error) {
	if b.calls.Add(1) == 1 {
		close(b.entered)
	}
	<-b.release
	name := "x"
	return []*dto.MetricFamily{{Name: &name}}, nil
}

func TestSharedGathererCoalesces(t *testing.T) {
	const scrapes = 20
	b := &blockingGatherer{entered: make(chan struct{}), release: make(chan struct{})}
	s := &sharedGatherer{g: b}
	var wg sync.WaitGroup
	var started atomic.Int32
	results := make(chan int, scrapes)
	scrape := func() {
		defer wg.Done()
		started.Add(1)
		mfs, err := s.Gather()
		if err != nil {
			t.Error(err)
		}
		results <- len(mfs)
	}
	wg.Add(1)
	go scrape()
	<-b.entered // the first gather is running and held
	for i := 1; i < scrapes; i++ {
		wg.Add(1)
		go scrape()
	}
	for started.Load() < scrapes {
		runtime.Gosched()
	}
	for i := 0; i < 1000; i++ { // let the late scrapes reach the shared flight
		runtime.Gosched()
	}
	close(b.release)
	wg.Wait()
	close(results)
	n := 0
	for r := range results {
		if r != 1 {
			t.Fatalf("a scrape got %d families", r)
		}
		n++
	}
	if n != scrapes {
		t.Fatalf("%d scrapes answered", n)
	}
	// Scrapes that joined the held gather share it; only a scrape that
	// arrived after it finished may start another.
	if c := b.calls.Load(); c >= scrapes {
		t.Fatalf("%d gathers for %d concurrent scrapes; they should share", c, scrapes)
	}
}
