package store

import "slices"

// Test-only helpers on the store's types.

// List returns the active credentials, optionally of one provider ("" = all),
// sorted by id.
func (s *Store) List(provider string) []*Entry {
	v := s.Snapshot()
	out := v.Entries[:0]
	for _, e := range v.Entries {
		if provider == "" || e.Provider == provider {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *Entry) int { return compareInt64(a.ID, b.ID) })
	return out
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
