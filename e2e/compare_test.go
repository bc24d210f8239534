//go:build e2e

package e2e

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// compareMirror checks that the exporter's metrics describe exactly the
// broker snapshot: liveness, stream mode, generation, refresher schedule,
// the credential set with its identity labels, counts by provider and
// type, OAuth expiries, rotation deadlines and active blocks. It returns
// the first difference.
//
// streamedGen is the generation of the last frame the broker streamed:
// the broker bumps its generation on events that change no entry (e.g. the
// failure at the end of a refresh sweep) and streams nothing then, so the
// mirror may legitimately stay a few generations behind the snapshot.
func compareMirror(s *snapshot, m metrics, brokerVersion string, streamedGen int64) error {
	want1 := func(name string, want float64, kv ...string) error {
		v, err := m.one(name, kv...)
		if err != nil {
			return err
		}
		if math.Abs(v-want) > 1e-3 {
			return fmt.Errorf("%s%s = %v, want %v", name, fmtKV(kv), v, want)
		}
		return nil
	}
	checks := []func() error{
		func() error { return want1("authbroker_up", 1) },
		func() error { return want1("authbroker_sync_mode", 1, "mode", "stream") },
		func() error { return want1("authbroker_sync_mode", 0, "mode", "poll") },
		func() error { return want1("authbroker_stream_connected", 1) },
		func() error { return want1("authbroker_stream_supported", 1) },
		func() error { return want1("authbroker_broker_info", 1, "version", brokerVersion) },
		func() error { return want1("authbroker_refresher_enabled", boolf(s.Refresher.Enabled)) },
		func() error { return want1("authbroker_refresher_interval_seconds", s.Refresher.IntervalMs/1000) },
		func() error { return want1("authbroker_refresher_skew_seconds", s.Refresher.SkewMs/1000) },
	}
	for _, c := range checks {
		if err := c(); err != nil {
			return err
		}
	}

	// The credential set, by id, with identity labels (--collector.identity=raw).
	byID := s.byID()
	info := m["authbroker_credential_info"]
	seen := map[string]bool{}
	for _, smp := range info {
		id := smp.labels["id"]
		if seen[id] {
			return fmt.Errorf("credential_info: id %s twice", id)
		}
		seen[id] = true
		n, _ := strconv.ParseInt(id, 10, 64)
		e, ok := byID[n]
		if !ok {
			return fmt.Errorf("credential_info{id=%q} is not in the broker snapshot (snapshot ids %v)", id, s.ids())
		}
		ident := ""
		if e.IdentityKey != nil {
			ident = *e.IdentityKey
		}
		want := map[string]string{
			"provider": e.Provider, "type": e.Credential.Type, "identity": ident,
			"email": e.Credential.Email, "account": e.Credential.AccountID, "org": e.Credential.OrgID,
		}
		for k, v := range want {
			if smp.labels[k] != v {
				return fmt.Errorf("credential_info{id=%q} %s=%q, broker says %q", id, k, smp.labels[k], v)
			}
		}
	}
	for _, e := range s.Credentials {
		if !seen[itoa(e.ID)] {
			return fmt.Errorf("broker credential %d (%s) has no credential_info", e.ID, e.Provider)
		}
	}

	// Every per-credential series belongs to a credential of the snapshot.
	for name, ss := range m {
		for _, smp := range ss {
			if id, ok := smp.labels["id"]; ok && !seen[id] {
				return fmt.Errorf("%s%s: id not in the broker snapshot", name, fmtLabels(smp.labels))
			}
		}
	}

	// Counts by provider and type.
	counts := map[[2]string]int{}
	for _, e := range s.Credentials {
		counts[[2]string{e.Provider, e.Credential.Type}]++
	}
	if got := len(m["authbroker_credentials"]); got != len(counts) {
		return fmt.Errorf("authbroker_credentials has %d series, the snapshot %d (provider, type) pairs", got, len(counts))
	}
	for k, n := range counts {
		if err := want1("authbroker_credentials", float64(n), "provider", k[0], "type", k[1]); err != nil {
			return err
		}
	}

	// Per-credential OAuth series.
	for _, e := range s.Credentials {
		id := itoa(e.ID)
		exp := m.find("authbroker_credential_expiry_timestamp_seconds", "id", id)
		rot := m.find("authbroker_credential_rotates_in_seconds", "id", id)
		if e.Credential.Type != "oauth" {
			if len(exp)+len(rot) != 0 {
				return fmt.Errorf("%s credential %d has expiry/rotates_in series", e.Credential.Type, e.ID)
			}
			continue
		}
		if e.Credential.Expires != nil {
			if err := want1("authbroker_credential_expiry_timestamp_seconds", *e.Credential.Expires/1000, "id", id, "provider", e.Provider); err != nil {
				return err
			}
		} else if len(exp) != 0 {
			return fmt.Errorf("credential %d has no expires but an expiry series", e.ID)
		}
		// The value moves with the receipt time and the broker's sweep
		// clock (which changes without a generation bump, docs/broker-protocol.md §7.3),
		// so only presence is compared here.
		if (e.RotatesInMs != nil) != (len(rot) == 1) {
			return fmt.Errorf("credential %d: rotatesInMs present=%v, rotates_in series %d", e.ID, e.RotatesInMs != nil, len(rot))
		}
		want := map[string]float64{}
		for _, b := range e.Blocks {
			if v := b.BlockedUntilMs / 1000; v > want[b.BlockScope] {
				want[b.BlockScope] = v
			}
		}
		got := map[string]float64{}
		for _, smp := range m.find("authbroker_credential_blocked_until_timestamp_seconds", "id", id) {
			got[smp.labels["scope"]] = smp.value
		}
		if len(got) != len(want) {
			return fmt.Errorf("credential %d: blocks %v, broker says %v", e.ID, sortedKeys(got), sortedKeys(want))
		}
		for scope, v := range want {
			if g, ok := got[scope]; !ok || math.Abs(g-v) > 1e-3 {
				return fmt.Errorf("credential %d: block %q ends %v, broker says %v", e.ID, scope, g, v)
			}
		}
	}
	if streamedGen > s.Generation {
		return fmt.Errorf("the broker streamed generation %d after the snapshot's %d", streamedGen, s.Generation)
	}
	return want1("authbroker_snapshot_generation", float64(streamedGen))
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// idsOf lists the ids of credential_info, sorted.
func idsOf(m metrics) []int64 {
	var out []int64
	for _, s := range m["authbroker_credential_info"] {
		n, err := strconv.ParseInt(s.labels["id"], 10, 64)
		if err == nil {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
