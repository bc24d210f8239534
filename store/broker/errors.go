package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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

// SyncReason classifies a failed stream connection, long-poll or
// reconciling GET.
func SyncReason(err error) string {
	var he *HTTPError
	var pe *ProtocolError
	var ne *NetError
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
	case errors.As(err, new(*TokenError)):
		return SyncReasonUnauthorized
	case errors.As(err, &ne) && ne.Timeout, errors.Is(err, context.DeadlineExceeded):
		return SyncReasonTimeout
	default:
		return SyncReasonNetwork
	}
}

// CallReason classifies a failed refresh, disable or usage call.
func CallReason(err error) string {
	var he *HTTPError
	var pe *ProtocolError
	var ne *NetError
	switch {
	case errors.As(err, &pe) && pe.TooLarge:
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
	case errors.As(err, new(*TokenError)):
		return ReasonUnauthorized
	case errors.As(err, &ne):
		if ne.Timeout {
			return ReasonTimeout
		}
		return ReasonNetwork
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The caller stopped waiting for the answer.
		return ReasonTimeout
	default:
		return ReasonNetwork
	}
}

// HTTPError is a non-success status from the broker. Message is the
// broker's "error" text with anything the client sent as a secret scrubbed
// out; response bodies are never quoted otherwise.
type HTTPError struct {
	Method  string
	Path    string
	Status  int
	Message string
}

func (e *HTTPError) Error() string {
	msg := cmp.Or(e.Message, http.StatusText(e.Status))
	return fmt.Sprintf("auth-broker %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, msg)
}

// NetError is a transport failure (connection refused, reset, a per-attempt
// timeout) after the one allowed retry.
type NetError struct {
	Method, Path string
	Timeout      bool
	Err          error
}

func (e *NetError) Error() string {
	if e.Timeout {
		return fmt.Sprintf("auth-broker %s %s: timeout: %v", e.Method, e.Path, e.Err)
	}
	return fmt.Sprintf("auth-broker %s %s: %v", e.Method, e.Path, e.Err)
}

func (e *NetError) Unwrap() error { return e.Err }

// ProtocolError reports a response or frame the broker should never send:
// malformed JSON, a duplicate or case-variant key, a value of the wrong
// type, a missing required field, an unexpected content type, an oversized
// frame. Its text names the field path but never quotes the offending
// payload, which may carry token material.
type ProtocolError struct {
	Op       string // e.g. "GET /v1/snapshot" or "stream"
	Detail   string
	TooLarge bool // the body or frame was over its size limit
}

func (e *ProtocolError) Error() string {
	return "auth-broker " + e.Op + ": invalid response: " + e.Detail
}

func protoErr(op, format string, args ...any) *ProtocolError {
	return &ProtocolError{Op: op, Detail: fmt.Sprintf(format, args...)}
}
