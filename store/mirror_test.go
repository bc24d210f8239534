package store

import (
	"math/rand/v2"
	"testing"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// TestMirrorMatchesMap drives the slice-backed mirror and a plain map with
// the same random upserts and deletes and compares them after every step.
func TestMirrorMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := newMirror(0)
	model := map[int64]*Entry{}
	for step := range 20000 {
		id := int64(r.IntN(64))
		if r.IntN(3) == 0 {
			m.del(id)
			delete(model, id)
		} else {
			e := &Entry{Entry: &broker.Entry{ID: id}}
			m.set(e)
			model[id] = e
		}
		if len(m.list) != len(model) || len(m.idx) != len(model) {
			t.Fatalf("step %d: %d/%d entries, model %d", step, len(m.list), len(m.idx), len(model))
		}
		for i, e := range m.list {
			if model[e.ID] != e || m.idx[e.ID] != i || m.get(e.ID) != e {
				t.Fatalf("step %d: id %d inconsistent", step, e.ID)
			}
		}
	}
	if cap(m.list) > 0 && len(m.list) < cap(m.list) && m.list[:cap(m.list)][len(m.list)] != nil {
		t.Fatal("deleted slot still references an entry")
	}
}
