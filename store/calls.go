package store

import (
	"context"
	"strconv"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// The store's two calls that change the broker's state, both used only by
// the opt-in self-healing of internal/monitor. The mirror is never changed
// locally: the broker bumps its generation on every refresh attempt and
// disable, and the change reaches the mirror through the stream or the
// next long-poll like any other (so an answer that was in flight before
// the call can never undo it).

// RefreshOAuthCredential asks the broker to refresh id now and counts the
// outcome by provider; a non-OAuth answer is an invalid response.
func (s *Store) RefreshOAuthCredential(ctx context.Context, id int64) error {
	provider := unknownProvider
	if m := s.entry(id); m != nil {
		provider = m.Provider
	}
	e, err := s.broker.Refresh(ctx, id)
	if err == nil && e.Credential.Type != broker.TypeOAuth {
		err = &broker.ProtocolError{Op: "POST /v1/credential/" + strconv.FormatInt(id, 10) + "/refresh",
			Detail: "broker returned a non-OAuth credential"}
	}
	if e != nil && provider == unknownProvider {
		provider = e.Provider
	}
	s.countCall(&s.count.RefreshRequests, &s.count.RefreshErrors, provider, err)
	return err
}

// DisableCredentialRemote asks the broker to disable id with cause and
// counts the outcome; false without a call when id is not mirrored.
func (s *Store) DisableCredentialRemote(ctx context.Context, id int64, cause string) (bool, error) {
	e := s.entry(id)
	if e == nil {
		return false, nil
	}
	err := s.broker.Disable(ctx, id, cause)
	s.countCall(&s.count.DisableRequests, &s.count.DisableErrors, e.Provider, err)
	return err == nil, err
}

// unknownProvider labels a call about an id the mirror does not hold.
const unknownProvider = "unknown"

func (s *Store) countCall(requests *map[CallOutcome]uint64, errs *map[CallFailure]uint64, provider string, err error) {
	s.sm.Lock()
	defer s.sm.Unlock()
	if err == nil {
		inc(requests, CallOutcome{provider, SyncResultOK})
		return
	}
	inc(requests, CallOutcome{provider, SyncResultError})
	inc(errs, CallFailure{provider, broker.CallReason(err)})
}
