package store

import "time"

// retryDelay is the sync loop's retry delay: it doubles from initial up to max
// and is reset by the loop after a healthy exchange.
type retryDelay struct {
	initial, max, next time.Duration
}

func newRetryDelay(initial, max time.Duration) retryDelay {
	return retryDelay{initial: initial, max: max, next: initial}
}

// Next returns the delay to wait now and escalates the following one.
func (b *retryDelay) Next() time.Duration {
	d := b.next
	b.next *= 2
	if b.next > b.max || b.next <= 0 {
		b.next = b.max
	}
	return min(d, b.max)
}

func (b *retryDelay) Reset() { b.next = b.initial }
