package store

import (
	"context"
	"strconv"
	"time"

	"github.com/go-kit/log/level"
)

// Seed constants for PrepareForRequest.
const (
	waitThreshold = time.Second
	maxPrepWait   = 5 * time.Second
)

// RefreshSnapshot does one unconditional GET /v1/snapshot and applies it.
func (s *Store) RefreshSnapshot(ctx context.Context) (View, error) {
	res, err := s.client.snapshot(ctx, SnapshotRequest{}, s.clock)
	if err != nil {
		return s.Snapshot(), err
	}
	s.adoptSnapshot(res.Snapshot, false)
	return s.Snapshot(), nil
}

// WaitForFreshSnapshot long-polls up to maxWait for a generation other than
// the local one; it reports whether the generation moved.
func (s *Store) WaitForFreshSnapshot(ctx context.Context, maxWait time.Duration) (bool, error) {
	s.mu.RLock()
	prev := s.gen
	s.mu.RUnlock()
	res, err := s.client.snapshot(ctx, SnapshotRequest{LongPoll: true, Generation: prev, Wait: maxWait}, s.clock)
	if err != nil {
		return false, err
	}
	if !res.NotModified {
		s.adoptSnapshot(res.Snapshot, false)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen != prev, nil
}

// PrepareForRequest waits (up to 5 s) for a fresh snapshot when the
// credential's rotation is due within 1 s; it reports whether it moved.
func (s *Store) PrepareForRequest(ctx context.Context, id int64) (bool, error) {
	e := s.entry(id)
	if e == nil || e.Credential.Type != TypeOAuth {
		return false, nil
	}
	deadline, ok := e.RotationDeadline()
	if !ok || deadline.Sub(s.clock.Now()) > waitThreshold {
		return false, nil
	}
	return s.WaitForFreshSnapshot(ctx, maxPrepWait)
}

// maybeRefreshSnapshot re-reads the snapshot in the background after a
// write, unless a live stream will deliver the change anyway.
func (s *Store) maybeRefreshSnapshot(reason string) {
	if s.streamConnected.Load() {
		return
	}
	s.goOwned(func() {
		if _, err := s.RefreshSnapshot(s.ctx); err != nil && s.ctx.Err() == nil {
			level.Debug(s.log).Log("msg", "auth-broker snapshot refresh after write failed", "after", reason, "err", err)
		}
	})
}

func (s *Store) countOp(requests, errs map[[2]string]uint64, provider string, err error) {
	s.sm.Lock()
	defer s.sm.Unlock()
	if err == nil {
		requests[[2]string{provider, SyncResultOK}]++
		return
	}
	requests[[2]string{provider, SyncResultError}]++
	errs[[2]string{provider, opReason(err)}]++
}

// refresh asks the broker to refresh id and counts the outcome; a
// non-OAuth answer is an invalid response.
func (s *Store) refresh(ctx context.Context, id int64) (*Entry, error) {
	provider := s.providerOf(id)
	e, err := s.client.refresh(ctx, id, s.clock)
	if err == nil && e.Credential.Type != TypeOAuth {
		err = protoErr("POST /v1/credential/"+strconv.FormatInt(id, 10)+"/refresh",
			"broker returned a non-OAuth credential")
	}
	if e != nil && provider == "unknown" {
		provider = e.Provider
	}
	s.countOp(s.count.RefreshRequests, s.count.RefreshErrors, provider, err)
	return e, err
}

func (s *Store) disable(ctx context.Context, provider string, id int64, cause string) error {
	err := s.client.Disable(ctx, id, cause)
	s.countOp(s.count.DisableRequests, s.count.DisableErrors, provider, err)
	return err
}

// MarkCredentialSuspect asks the broker to refresh id and mirrors the result.
func (s *Store) MarkCredentialSuspect(ctx context.Context, id int64) error {
	e, err := s.refresh(ctx, id)
	if err != nil {
		return err
	}
	s.upsertLocal(e)
	s.maybeRefreshSnapshot("suspect credential refresh")
	return nil
}

// RefreshOAuthCredential refreshes id through the broker and returns the
// redacted entry (the port never hands out the access token). Like the
// seed it re-reads the snapshot when no stream is live, and leaves
// mirroring the entry to the caller (UpdateCredential).
func (s *Store) RefreshOAuthCredential(ctx context.Context, id int64) (*Entry, error) {
	e, err := s.refresh(ctx, id)
	if e == nil {
		return nil, err
	}
	if !s.streamConnected.Load() {
		if _, rerr := s.RefreshSnapshot(ctx); rerr != nil {
			level.Debug(s.log).Log("msg", "auth-broker snapshot refresh after credential refresh failed", "err", rerr)
		}
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

// DisableCredential drops id locally and tells the broker in the background
// (fire-and-forget; failures are counted and logged).
func (s *Store) DisableCredential(id int64, cause string) {
	provider := s.providerOf(id)
	s.removeLocal(id)
	s.goOwned(func() {
		if err := s.disable(s.ctx, provider, id, cause); err != nil && s.ctx.Err() == nil {
			level.Warn(s.log).Log("msg", "auth-broker disable propagation failed", "id", id, "provider", provider, "err", err)
		}
	})
}

// DisableCredentialRemote disables id at the broker and then drops it
// locally; false when id is not mirrored.
func (s *Store) DisableCredentialRemote(ctx context.Context, id int64, cause string) (bool, error) {
	e := s.entry(id)
	if e == nil {
		return false, nil
	}
	if err := s.disable(ctx, e.Provider, id, cause); err != nil {
		return false, err
	}
	s.removeLocal(id)
	s.maybeRefreshSnapshot("delete credential")
	return true, nil
}

// TryDisableIfMatches disables id (fire-and-forget) when it is mirrored.
// expected is the seed's serialized-credential guard; the port has no
// serialized form to compare, so like the seed it only checks presence.
func (s *Store) TryDisableIfMatches(id int64, expected string, cause string) bool {
	if s.entry(id) == nil {
		return false
	}
	s.DisableCredential(id, cause)
	return true
}

// UpsertRemote uploads one credential and mirrors the provider's rows.
func (s *Store) UpsertRemote(ctx context.Context, provider string, c UploadCredential) ([]*Entry, error) {
	es, err := s.client.upload(ctx, provider, c, s.clock)
	if err != nil {
		return nil, err
	}
	s.replaceProviderLocal(provider, es)
	s.maybeRefreshSnapshot("upload")
	return s.List(provider), nil
}

// ReplaceRemote disables every row of provider, then uploads each credential.
// Failed disables are counted and logged, as in the seed; a failed upload
// stops the replacement and is returned.
func (s *Store) ReplaceRemote(ctx context.Context, provider string, cs []UploadCredential) ([]*Entry, error) {
	s.disableAll(ctx, provider, "replaced by newer credential")
	// Readers must never see old and new rows of the provider together.
	s.removeProviderLocal(provider)
	for _, c := range cs {
		es, err := s.client.upload(ctx, provider, c, s.clock)
		if err != nil {
			s.maybeRefreshSnapshot("replace")
			return nil, err
		}
		s.replaceProviderLocal(provider, es)
	}
	s.maybeRefreshSnapshot("replace")
	return s.List(provider), nil
}

// DeleteProviderRemote disables every row of provider at the broker.
// Individual failures are counted and logged (as in the seed); the error is
// the caller's context error when it gave up.
func (s *Store) DeleteProviderRemote(ctx context.Context, provider, cause string) error {
	s.disableAll(ctx, provider, cause)
	s.removeProviderLocal(provider)
	s.maybeRefreshSnapshot("delete")
	return ctx.Err()
}

func (s *Store) disableAll(ctx context.Context, provider, cause string) {
	for _, e := range s.List(provider) {
		if err := s.disable(ctx, provider, e.ID, cause); err != nil {
			level.Warn(s.log).Log("msg", "auth-broker disable failed", "id", e.ID, "provider", provider, "err", err)
		}
	}
}

// Disabled lists the broker's tombstones (404 from an old broker = none).
func (s *Store) Disabled(ctx context.Context, provider string) ([]Tombstone, error) {
	return s.client.Disabled(ctx, provider)
}
