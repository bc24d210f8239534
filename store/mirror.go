package store

// mirror is the credential set keyed by id. A dense slice backs it so a
// reader's copy under the read lock is a memmove, not a map walk; the index
// keeps upsert and delete O(1) (delete swaps the last element in).
type mirror struct {
	idx  map[int64]int
	list []*Entry
}

func newMirror(capacity int) mirror {
	return mirror{idx: make(map[int64]int, capacity), list: make([]*Entry, 0, capacity)}
}

func (m *mirror) get(id int64) *Entry {
	if i, ok := m.idx[id]; ok {
		return m.list[i]
	}
	return nil
}

func (m *mirror) set(e *Entry) {
	if i, ok := m.idx[e.ID]; ok {
		m.list[i] = e
		return
	}
	m.idx[e.ID] = len(m.list)
	m.list = append(m.list, e)
}

func (m *mirror) del(id int64) {
	i, ok := m.idx[id]
	if !ok {
		return
	}
	last := len(m.list) - 1
	if i != last {
		m.list[i] = m.list[last]
		m.idx[m.list[i].ID] = i
	}
	m.list[last] = nil
	m.list = m.list[:last]
	delete(m.idx, id)
}
