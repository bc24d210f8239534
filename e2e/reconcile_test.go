//go:build e2e

package e2e

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"
)

// reconcileAfterFailedSweep: a refresh sweep that fails (every provider
// call fails offline) bumps the broker's generation twice and streams a
// frame for the first bump only (docs/broker-protocol.md §13.4). The
// stream-mode exporter must then reconcile with a conditional GET
// /v1/snapshot, so that shortly after the sweep its generation and the
// failing credential's rotation deadline equal the broker's own snapshot.
func (s *suite) reconcileAfterFailedSweep(t *testing.T) {
	began := time.Now()
	t.Cleanup(func() { t.Logf("reconcile step took %s", time.Since(began).Round(100*time.Millisecond)) })
	logPath := filepath.Join(s.broker.dir, "broker.log")

	m0, err := s.scrape()
	if err != nil {
		t.Fatal(err)
	}
	okBefore := reconcileOK(m0)

	// Expires inside the refresher's 5-minute skew, so the broker's next
	// sweep tries to refresh it, and fails transiently.
	const mail = "sweep@e2e.example"
	id, err := s.api.upload(s.ctx, "anthropic", map[string]any{
		"type": "oauth", "access": "e2e-access-sweep", "refresh": "e2e-refresh-sweep",
		"expires": time.Now().Add(4 * time.Minute).UnixMilli(), "email": mail,
	}, func(e snapEntry) bool { return e.Credential.Email == mail })
	if err != nil {
		t.Fatal(err)
	}
	ids := itoa(id)
	t.Logf("uploaded credential %d expiring in 4 min (refresher skew 5 min)", id)

	// The failed sweep: the broker logged the transient failure of this
	// id. The refresher sweeps every 60 s. Whether the sweep's last bump
	// was streamed is only logged: the broker streams every bump that
	// changes some entry's fingerprint, and a credential that is not due
	// has a rotatesInMs that moves with the broker's clock.
	var swept *snapshot
	var streamed int64
	s.eventually(t, "a failed sweep of the new credential", 90*time.Second, func() error {
		logged, err := brokerLogged(logPath, "auth-broker refresh failed (transient)", id)
		if err != nil {
			return err
		}
		if !logged {
			return fmt.Errorf("the broker has not logged a failed refresh of %d yet", id)
		}
		snap, err := s.api.snapshot(s.ctx)
		if err != nil {
			return err
		}
		gen, err := lastStreamedGeneration(logPath)
		if err != nil {
			return err
		}
		swept, streamed = snap, gen
		return nil
	})
	e := swept.byID()[id]
	t.Logf("failed sweep seen %s after the upload: broker snapshot generation %d (last streamed frame %d), rotatesInMs %s, nextSweepInMs %v",
		time.Since(began).Round(100*time.Millisecond), swept.Generation, streamed, fmtMs(e.RotatesInMs), swept.Refresher.NextSweepInMs)
	if e.RotatesInMs == nil || *e.RotatesInMs <= 0 {
		t.Fatalf("after the failed sweep the broker gives credential %d rotatesInMs %s, want the next attempt scheduled ahead", id, fmtMs(e.RotatesInMs))
	}

	sawn := time.Now()
	var last string
	s.eventually(t, "exporter equal to the broker after the failed sweep", 15*time.Second, func() error {
		snap, err := s.api.snapshot(s.ctx)
		if err != nil {
			return err
		}
		scraped := time.Now()
		m, err := s.scrape()
		if err != nil {
			return err
		}
		gen, err := m.one("authbroker_snapshot_generation")
		if err != nil {
			return err
		}
		if gen != float64(snap.Generation) {
			return fmt.Errorf("exporter generation %v, broker %d", gen, snap.Generation)
		}
		be, ok := snap.byID()[id]
		if !ok || be.RotatesInMs == nil {
			return fmt.Errorf("broker snapshot has no rotatesInMs for %d", id)
		}
		rot, err := m.one("authbroker_credential_rotates_in_seconds", "id", ids)
		if err != nil {
			return err
		}
		// The broker's value is relative to its answer; move it to the scrape.
		want := *be.RotatesInMs/1000 - scraped.Sub(snap.fetched).Seconds()
		if math.Abs(rot-want) > 5 {
			return fmt.Errorf("rotates_in_seconds{id=%q} = %.1f, broker says %.1f", ids, rot, want)
		}
		if ok := reconcileOK(m); ok <= okBefore {
			return fmt.Errorf("sync_requests_total{mode=\"reconcile\",result=\"ok\"} = %v, %v before the sweep", ok, okBefore)
		}
		next, err := m.one("authbroker_refresher_next_sweep_timestamp_seconds")
		if err != nil {
			return err
		}
		if now := float64(time.Now().UnixMilli()) / 1000; next <= now {
			return fmt.Errorf("refresher_next_sweep_timestamp_seconds %.1f is %.1f s in the past", next, now-next)
		}
		last = fmt.Sprintf("generation %v = broker %d; rotates_in %.1f s vs broker %.1f s; reconcile ok %v (was %v)",
			gen, snap.Generation, rot, want, reconcileOK(m), okBefore)
		return nil
	})
	t.Logf("equal %s after the failed sweep was seen: %s", time.Since(sawn).Round(100*time.Millisecond), last)
}

func reconcileOK(m metrics) float64 {
	v, _ := m.one("authbroker_sync_requests_total", "mode", "reconcile", "result", "ok")
	return v
}

func fmtMs(v *float64) string {
	if v == nil {
		return "absent"
	}
	return fmt.Sprintf("%.0f", *v)
}
