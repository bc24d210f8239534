package harness

import "testing"

func TestSampleValue(t *testing.T) {
	text := []byte("# HELP authbroker_snapshot_generation x\nauthbroker_snapshot_generation 42\n" +
		"authbroker_snapshot_generation_resets_total 3\nauthbroker_up 1")
	for _, c := range []struct {
		prefix string
		want   float64
		ok     bool
	}{
		{"authbroker_snapshot_generation ", 42, true},
		{"authbroker_snapshot_generation_resets_total ", 3, true},
		{"authbroker_up ", 1, true},
		{"# HELP ", 0, false}, // the help text's last word is no number
		{"authbroker_missing ", 0, false},
	} {
		if got, ok := sampleValue(text, c.prefix); got != c.want || ok != c.ok {
			t.Errorf("%q: %v, %v; want %v, %v", c.prefix, got, ok, c.want, c.ok)
		}
	}
}

func TestMedian(t *testing.T) {
	if got := Median([]int{5, 1, 4, 2}); got != 4 {
		t.Errorf("median of 5, 1, 4, 2: %d, want the upper middle 4", got)
	}
	if got := Median([]float64(nil)); got != 0 {
		t.Errorf("median of nothing: %v, want 0", got)
	}
}
