// Package testwait holds the tests' one way to wait for a condition that
// nothing announces: poll it until it holds, and fail the test at a
// deadline instead of hanging. Tests that can wait on a signal (the
// store's fake clock and change hook) do that instead.
package testwait

import (
	"testing"
	"time"
)

// Deadline is how long Eventually polls before it fails the test: long
// enough for a busy 2-core CI machine, short enough to beat go test's own
// timeout with a message that says what was awaited.
const Deadline = 30 * time.Second

// Eventually polls cond every millisecond until it holds, and fails the
// test (t.Fatalf, so only from the test's goroutine) after Deadline,
// naming what it waited for.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, Deadline, what, cond)
}

func eventuallyWithin(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", limit, what)
		}
		time.Sleep(time.Millisecond)
	}
}
