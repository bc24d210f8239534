package broker

import (
	"context"
	"errors"
	"net/http"
)

// Failure reasons (closed vocabularies: they are metric label values).
const (
	// Sync failures: stream connections, long-polls, reconciling GETs.
	SyncReasonNetwork      = "network"
	SyncReasonTimeout      = "timeout"
	SyncReasonUnauthorized = "unauthorized"
	SyncReason4xx          = "http_4xx"
	SyncReason5xx          = "http_5xx"
	SyncReasonProtocol     = "protocol"
	SyncReasonIdle         = "idle"
	SyncReasonEOF          = "eof"

	// Call failures: refresh, disable, usage.
	ReasonNotFound        = "not_found"
	ReasonUpstream        = "upstream"
	ReasonTimeout         = "timeout"
	ReasonNetwork         = "network"
	ReasonUnauthorized    = "unauthorized"
	ReasonInvalidResponse = "invalid_response"
	ReasonTooLarge        = "too_large" // an answer over its size limit
)

func isTokenErr(err error) bool {
	var te *TokenError
	return errors.As(err, &te)
}

// SyncReason classifies a failed stream connection, long-poll or
// reconciling GET.
func SyncReason(err error) string {
	var (
		he *HTTPError
		pe *ProtocolError
		ne *NetError
	)
	switch {
	case errors.Is(err, ErrStreamIdle):
		return SyncReasonIdle
	case errors.Is(err, ErrStreamEnded):
		return SyncReasonEOF
	case errors.Is(err, ErrStreamUnsupported):
		return SyncReason4xx
	case errors.As(err, &pe):
		return SyncReasonProtocol
	case errors.As(err, &he):
		switch {
		case he.Status == http.StatusUnauthorized:
			return SyncReasonUnauthorized
		case he.Status >= 500:
			return SyncReason5xx
		default:
			return SyncReason4xx
		}
	case isTokenErr(err):
		return SyncReasonUnauthorized
	case errors.As(err, &ne) && ne.Timeout, errors.Is(err, context.DeadlineExceeded):
		return SyncReasonTimeout
	default:
		return SyncReasonNetwork
	}
}

// CallReason classifies a failed refresh, disable or usage call.
func CallReason(err error) string {
	var (
		he *HTTPError
		pe *ProtocolError
		ne *NetError
	)
	switch {
	case errors.Is(err, ErrTooLarge):
		return ReasonTooLarge
	case errors.As(err, &he):
		switch he.Status {
		case http.StatusNotFound:
			return ReasonNotFound
		case http.StatusUnauthorized:
			return ReasonUnauthorized
		default:
			return ReasonUpstream
		}
	case errors.As(err, &pe):
		return ReasonInvalidResponse
	case isTokenErr(err):
		return ReasonUnauthorized
	case errors.As(err, &ne):
		if ne.Timeout {
			return ReasonTimeout
		}
		return ReasonNetwork
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The caller stopped waiting for the
		return ReasonTimeout
	default:
		return ReasonNetwork
	}
}
