package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	slgk "github.com/tjhop/slog-gokit"
)

// One log format: every line, the exporter's own (go-kit/log) and
// exporter-toolkit's (log/slog, bridged to go-kit/log by slog-gokit),
// starts with the same keys in the same order: level, ts (RFC 3339 with
// nanoseconds, UTC), caller (file:line), msg.
const (
	timeKey   = "ts"
	callerKey = "caller"
)

// logger returns the exporter's logger. The level filter is applied once,
// here; the slog bridge gets the logger without the ts/caller decorations,
// since slog records carry their own time and call site.
func (c *config) logger(w io.Writer) (log.Logger, error) {
	var l log.Logger
	if c.logFormat == "json" {
		l = log.NewJSONLogger(log.NewSyncWriter(w))
	} else {
		l = log.NewLogfmtLogger(log.NewSyncWriter(w))
	}
	opt := map[string]level.Option{"debug": level.AllowDebug(), "info": level.AllowInfo(), "warn": level.AllowWarn(), "error": level.AllowError()}[c.logLevel]
	if opt == nil {
		return nil, fmt.Errorf("unknown --log.level %q", c.logLevel)
	}
	c.plainLogger = level.NewFilter(l, opt)
	return log.With(c.plainLogger, timeKey, log.DefaultTimestampUTC, callerKey, log.DefaultCaller), nil
}

// slogger bridges go-kit/log to the *slog.Logger exporter-toolkit wants.
func (c *config) slogger() *slog.Logger {
	var sl slog.Level
	_ = sl.UnmarshalText([]byte(c.logLevel))
	return slog.New(slgk.NewGoKitHandler(bridgedLine{c.plainLogger, time.Now}, sl))
}

// bridgedLine rewrites a line slog-gokit hands over (level, caller, time,
// msg, attributes) into the exporter's format: its "time" becomes ts,
// written as go-kit's DefaultTimestampUTC writes it, and the leading keys
// take the go-kit lines' order.
type bridgedLine struct {
	next log.Logger
	now  func() time.Time
}

func (b bridgedLine) Log(kv ...any) error {
	var lvl, caller any
	at := time.Time{}
	rest := make([]any, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		switch kv[i] {
		case level.Key():
			lvl = kv[i+1]
		case slog.TimeKey:
			if t, ok := kv[i+1].(time.Time); ok {
				at = t
				continue
			}
			rest = append(rest, kv[i], kv[i+1])
		case callerKey:
			caller = kv[i+1]
		default:
			rest = append(rest, kv[i], kv[i+1])
		}
	}
	if at.IsZero() {
		at = b.now()
	}
	out := make([]any, 0, len(rest)+6)
	if lvl != nil {
		out = append(out, level.Key(), lvl)
	}
	out = append(out, timeKey, at.UTC().Format(time.RFC3339Nano))
	if caller != nil {
		out = append(out, callerKey, caller)
	}
	return b.next.Log(append(out, rest...)...)
}
