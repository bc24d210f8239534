package broker

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/authbroker/authbroker_exporter/store/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Short names for the shared test kit.
type (
	signal        = testkit.Signal
	fakeClock     = testkit.FakeClock
	logRecorder   = testkit.LogRecorder
	pipeTransport = testkit.PipeTransport
	recorded      = testkit.Recorded
)

const (
	canaryAccess = testkit.CanaryAccess
	canaryKey    = testkit.CanaryKey
	canaryExtra  = testkit.CanaryExtra
	canaryToken  = testkit.CanaryToken
	canaryToken2 = testkit.CanaryToken2
)

var (
	epoch          = testkit.Epoch
	newSignal      = testkit.NewSignal
	newFakeClock   = testkit.NewFakeClock
	assertNoCanary = testkit.AssertNoCanary
	writeFile      = testkit.WriteFile

	benchEntryJSON     = testkit.BenchEntryJSON
	benchSnapshotFrame = testkit.BenchSnapshotFrame
	benchEntryFrame    = testkit.BenchEntryFrame
	benchEntryFrames   = testkit.BenchEntryFrames
	sseBytes           = testkit.SSEBytes

	newRecServer = testkit.NewRecServer
	jsonReply    = testkit.JSONReply
	hangUp       = testkit.HangUp
)
