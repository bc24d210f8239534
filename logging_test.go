package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/go-logfmt/logfmt"
)

// logLine is one parsed log line: its keys in order and their values.
type logLine struct {
	keys   []string
	values map[string]string
}

func parseLogfmt(t *testing.T, line string) logLine {
	t.Helper()
	l := logLine{values: map[string]string{}}
	d := logfmt.NewDecoder(strings.NewReader(line))
	for d.ScanRecord() {
		for d.ScanKeyval() {
			l.keys = append(l.keys, string(d.Key()))
			l.values[string(d.Key())] = string(d.Value())
		}
	}
	if err := d.Err(); err != nil {
		t.Fatalf("not logfmt: %q: %v", line, err)
	}
	return l
}

func parseJSONLine(t *testing.T, line string) logLine {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("not JSON: %q: %v", line, err)
	}
	l := logLine{values: map[string]string{}}
	for k, v := range m {
		l.keys = append(l.keys, k)
		s, _ := v.(string)
		l.values[k] = s
	}
	slices.Sort(l.keys)
	return l
}

// TestOneLogFormat: a line of the exporter's own (go-kit/log) and a line of
// exporter-toolkit's (slog, through the bridge) carry the same timestamp and
// caller keys, once each, with values of the same form, in both formats.
func TestOneLogFormat(t *testing.T) {
	for _, format := range []string{"logfmt", "json"} {
		t.Run(format, func(t *testing.T) {
			b := seededBroker(t)
			logs := &syncBuffer{}
			cfg := parseConfig(t, "--broker.url="+b.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o600), "--log.format="+format)
			startExporter(t, cfg, logs)
			testwait.Eventually(t, "exporter-toolkit's line", func() bool { return strings.Contains(logs.String(), "Listening on") })
			parse := parseLogfmt
			if format == "json" {
				parse = parseJSONLine
			}
			var own, bridged *logLine
			for _, text := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				l := parse(t, text)
				switch l.values["msg"] {
				case "broker": // flags.go, through go-kit/log
					own = &l
				case "Listening on": // exporter-toolkit, through slog
					bridged = &l
				}
				for _, k := range []string{timeKey, callerKey} {
					if n := countOf(l.keys, k); n != 1 {
						t.Errorf("%d %s keys in %s", n, k, text)
					}
				}
				if slices.Contains(l.keys, "time") {
					t.Errorf("a time key besides ts: %s", text)
				}
			}
			if own == nil || bridged == nil {
				t.Fatalf("missing a line (own %v, bridged %v) in:\n%s", own != nil, bridged != nil, logs)
			}
			lead := func(l *logLine) []string { return l.keys[:min(4, len(l.keys))] }
			if format == "logfmt" && !slices.Equal(lead(own), lead(bridged)) {
				t.Errorf("leading keys differ: go-kit %v, slog %v", lead(own), lead(bridged))
			}
			for name, l := range map[string]*logLine{"go-kit": own, "slog": bridged} {
				for _, k := range []string{"level", timeKey, callerKey, "msg"} {
					if !slices.Contains(l.keys, k) {
						t.Errorf("%s line lacks %s: %v", name, k, l.keys)
					}
				}
				ts, err := time.Parse(time.RFC3339Nano, l.values[timeKey])
				if err != nil || ts.Location() != time.UTC || !strings.HasSuffix(l.values[timeKey], "Z") {
					t.Errorf("%s line: ts=%q is not RFC 3339 UTC: %v", name, l.values[timeKey], err)
				}
				if file, line, ok := strings.Cut(l.values[callerKey], ":"); !ok || !strings.HasSuffix(file, ".go") || strings.Contains(file, "/") || line == "" {
					t.Errorf("%s line: caller=%q, want file.go:line", name, l.values[callerKey])
				}
			}
			if own.values[callerKey] == bridged.values[callerKey] {
				t.Errorf("both lines name the same caller %q: one of them is not its call site", own.values[callerKey])
			}
		})
	}
}

func countOf(keys []string, k string) int {
	n := 0
	for _, x := range keys {
		if x == k {
			n++
		}
	}
	return n
}

// TestBridgedLineWithoutTime: a record slog hands over without a time
// still gets a ts.
func TestBridgedLineWithoutTime(t *testing.T) {
	var got []any
	at := time.Date(2026, 11, 30, 18, 1, 2, 3, time.FixedZone("x", 3600))
	b := bridgedLine{next: logFunc(func(kv ...any) error { got = kv; return nil }), now: func() time.Time { return at }}
	_ = b.Log("level", "info", "msg", "m", "k", "v")
	want := []any{"level", "info", timeKey, "2026-11-30T17:01:02.000000003Z", "msg", "m", "k", "v"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

type logFunc func(kv ...any) error

func (f logFunc) Log(kv ...any) error { return f(kv...) }
