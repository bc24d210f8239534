package collector

import (
	"bufio"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/store"
)

// Per-credential series are nearly all of a large scrape (31 per credential
// with usage, 32 once a rotation was observed: ~320k at 10k credentials). Going through the registry would
// materialise each one as a dto.Metric, hash and sort them all, and only
// then encode: most of the scrape's time and, mid-scrape, 100+ MB of heap.
// So the credential and usage collectors write their families through a
// sink instead. /metrics uses the text sink, which writes each series as
// one line from label text rendered once per entry version; Collect uses
// the registry sink, so tests, linters and anyone registering the
// collectors see exactly the same series through client_golang.

// family is one metric family of the sink-written collectors.
type family struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	name   string
	help   string
	header string // its # HELP and # TYPE lines
	labels *schema
}

func (f *family) typeName() string {
	if f.typ == prometheus.CounterValue {
		return "counter"
	}
	return "gauge"
}

// set renders one series' label values (in the family's label order).
func (f *family) set(values ...string) labelSet { return f.labels.set(values...) }

func newFamily(typ prometheus.ValueType, name, help string, labels ...string) *family {
	fq := prometheus.BuildFQName(namespace, "", name)
	f := &family{desc: prometheus.NewDesc(fq, help, labels, nil), typ: typ, name: fq, help: help, labels: newSchema(labels...)}
	f.header = "# HELP " + fq + " " + helpEscaper.Replace(help) + "\n# TYPE " + fq + " " + f.typeName() + "\n"
	return f
}

func describeFamilies(ch chan<- *prometheus.Desc, fs ...*family) {
	for _, f := range fs {
		ch <- f.desc
	}
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	valueEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// labelSet is one series' labels as exposition text, names sorted,
// rendered once: {a="1",b="2"}. Only the text is kept (at 10k credentials
// there are ~100k sets); the registry sink reads the values back.
type labelSet struct {
	text string
}

// schema is a label-name list and the order the exposition writes it in.
type schema struct {
	names []string
	order []int
}

func newSchema(names ...string) *schema {
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(names[a], names[b]) })
	return &schema{names: names, order: order}
}

// set renders values (in the schema's name order, already valid UTF-8).
func (s *schema) set(values ...string) labelSet {
	if len(values) == 0 {
		return labelSet{}
	}
	n := 2
	for i, v := range values {
		n += len(s.names[i]) + len(v) + 4
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteByte('{')
	for i, j := range s.order {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.names[j])
		b.WriteString(`="`)
		if strings.ContainsAny(values[j], "\\\n\"") {
			valueEscaper.WriteString(&b, values[j])
		} else {
			b.WriteString(values[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return labelSet{text: b.String()}
}

// values reads back the label values of a set rendered by set, in the
// schema's name order.
func (s *schema) values(text string) []string {
	if text == "" {
		return nil
	}
	out := make([]string, len(s.names))
	rest := text[1:] // past '{'
	for _, j := range s.order {
		rest = rest[len(s.names[j])+2:] // past name="
		var b strings.Builder
		i := 0
		for ; rest[i] != '"'; i++ {
			if rest[i] == '\\' {
				i++
				if rest[i] == 'n' {
					b.WriteByte('\n')
					continue
				}
			}
			b.WriteByte(rest[i])
		}
		out[j] = b.String()
		rest = rest[i+2:] // past '",' or '"}'
	}
	return out
}

// sink takes the series of the sink-written collectors, every series of a
// family in one run and in label order.
type sink interface {
	add(f *family, l *labelSet, v float64)
	// one writes a series whose label values are not cached.
	one(f *family, v float64, values ...string)
}

// registrySink hands the series to a registry as const metrics.
type registrySink struct{ ch chan<- prometheus.Metric }

func (s registrySink) add(f *family, l *labelSet, v float64) { s.one(f, v, f.labels.values(l.text)...) }

func (s registrySink) one(f *family, v float64, values ...string) {
	s.ch <- prometheus.MustNewConstMetric(f.desc, f.typ, v, values...)
}

// textSink writes the text exposition format (0.0.4), byte for byte what
// client_golang's encoder writes for the same series.
type textSink struct {
	w    *bufio.Writer
	cur  *family
	done map[*family]bool
	num  []byte
	err  error
}

func newTextSink(w *bufio.Writer) *textSink {
	return &textSink{w: w, done: map[*family]bool{}, num: make([]byte, 0, 32)}
}

func (t *textSink) add(f *family, l *labelSet, v float64) {
	if f != t.cur {
		if t.done[f] && t.err == nil {
			// A family split in two runs would be rejected by the scraper.
			t.err = fmt.Errorf("metric family %s written in two runs", f.name)
		}
		t.done[f], t.cur = true, f
		t.w.WriteString(f.header)
	}
	t.w.WriteString(f.name)
	t.w.WriteString(l.text)
	t.w.WriteByte(' ')
	t.num = appendValue(t.num[:0], v)
	t.num = append(t.num, '\n')
	t.w.Write(t.num)
}

func (t *textSink) one(f *family, v float64, values ...string) {
	l := f.set(values...)
	t.add(f, &l, v)
}

// appendValue formats v as the exposition format does.
func appendValue(b []byte, v float64) []byte {
	switch {
	case v == 0: // -0 too
		return append(b, '0')
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, +1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// sortedByID orders rows by their id label as strings compare, the order
// the registry sorts series of {id, ...} label sets in.
func sortedByID[T any](rows []T, id func(T) string) {
	slices.SortFunc(rows, func(a, b T) int { return strings.Compare(id(a), id(b)) })
}

// entryCache keeps per-entry label material across scrapes. Every update
// swaps in a map of only the current entries, so departed credentials
// take their cached labels with them.
type entryCache[T any] struct {
	mu sync.Mutex
	m  map[*store.Entry]T
	// spare is the map before m, emptied: the next update fills it, so a
	// scrape does not allocate a 10k-entry map per collector.
	spare map[*store.Entry]T
}

// update returns fn's row for every entry (in entries' order), passing the
// cached row, if any. fn returning ok=false skips the entry.
func (c *entryCache[T]) update(entries []*store.Entry, fn func(e *store.Entry, old T, hit bool) (T, bool)) []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.spare
	if next == nil {
		next = make(map[*store.Entry]T, len(entries))
	}
	rows := make([]T, 0, len(entries))
	for _, e := range entries {
		old, hit := c.m[e]
		row, ok := fn(e, old, hit)
		if !ok {
			continue
		}
		next[e] = row
		rows = append(rows, row)
	}
	c.m, c.spare = next, c.m
	clear(c.spare) // so it holds no departed entry or old row alive
	return rows
}
