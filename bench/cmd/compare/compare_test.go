package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The delta feed is the broker's own pass with the generation, access
// token and expiry of each frame replaced, and nothing else.
func TestFeedRotatesRecordedFrames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := &streamSide{side: &side{name: "test"}, f: newFixture(3, false)}
	defer s.f.broker.Close()
	if err := s.record(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s.templates) != 3 {
		t.Fatalf("recorded %d entry frames, want 3", len(s.templates))
	}
	s.gen = 41
	raw, last := s.build(4)
	if last != 45 {
		t.Errorf("last generation %d, want 45", last)
	}
	events := strings.Split(strings.TrimSuffix(string(raw), "\n\n"), "\n\n")
	if len(events) != 4 {
		t.Fatalf("%d events, want 4: %q", len(events), raw)
	}
	for k, ev := range events {
		data, ok := strings.CutPrefix(ev, "event: entry\ndata: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("event %d is not one entry frame: %q", k, ev)
		}
		var f struct {
			Generation int64
			Entry      struct {
				Credential struct {
					Access  string
					Expires int64
				}
			}
		}
		if err := json.Unmarshal([]byte(data), &f); err != nil {
			t.Fatalf("event %d: %v: %s", k, err, data)
		}
		seq := k + 1
		tmpl := s.templates[(seq*7919)%3]
		if f.Generation != int64(42+k) || f.Entry.Credential.Access != "rotated-"+strconv.Itoa(seq) {
			t.Errorf("event %d: generation %d, access %q", k, f.Generation, f.Entry.Credential.Access)
		}
		if want := expires(t, tmpl) + int64(seq)*1000; f.Entry.Credential.Expires != want {
			t.Errorf("event %d: expires %d, want %d", k, f.Entry.Credential.Expires, want)
		}
		if got := appendRotation(nil, tmpl, f.Generation, seq); !bytes.Equal(got, []byte(ev+"\n\n")) {
			t.Errorf("event %d differs from its template rotated alone", k)
		}
	}
}

func expires(t *testing.T, ev []byte) int64 {
	var f struct {
		Entry struct{ Credential struct{ Expires int64 } }
	}
	data := bytes.TrimPrefix(bytes.TrimSpace(ev), []byte("event: entry\ndata: "))
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return f.Entry.Credential.Expires
}

func TestGCTraceLiveHeap(t *testing.T) {
	lines := "level=warn msg=x\n" +
		"gc 7 @0.512s 3%: 0.031+1.2+0.004 ms clock, 0.063+0.4/1.0/0+0.009 ms cpu, 40->52->21 MB, 50 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		"gc 8 @1.512s 3%: 0.031+1.2+0.004 ms clock, 0.063+0.4/1.0/0+0.009 ms cpu, 41->53->25 MB, 50 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		"gc 9 @2.512s 3%: 0.031+1.2+0.004 ms clock, 0.063+0.4/1.0/0+0.009 ms cpu, 42->54->23 MB, 50 MB goal, 0 MB stacks, 0 MB globals, 2 P\n"
	if got := liveHeapMB(lines); got != 23 {
		t.Errorf("median live heap %v MB, want 23", got)
	}
}
