package store

import (
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	b := newRetryDelay(500*time.Millisecond, 30*time.Second)
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if d := b.Next(); d != w {
			t.Fatalf("step %d: %v, want %v", i, d, w)
		}
	}
	b.Reset()
	if d := b.Next(); d != 500*time.Millisecond {
		t.Fatalf("after reset %v", d)
	}
}
