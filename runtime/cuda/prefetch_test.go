package cuda

import "testing"

// TestPrefetchRanges checks what a paged attention launch asks into L2 of
// the weights named by PrefetchWeights: their first bytes in order up to
// the budget, at most two spans, each cut to whole 16-byte units, spans
// not 16-byte aligned skipped; worked out by hand.
func TestPrefetchRanges(t *testing.T) {
	spans := func(s ...pfRange) func(func(uint64, int64) bool) {
		return func(yield func(uint64, int64) bool) {
			for _, r := range s {
				if !yield(r.ptr, r.n) {
					return
				}
			}
		}
	}
	const mib = 1 << 20
	o, g := pfRange{0x10000, 8 * mib}, pfRange{0x900000, 56 * mib}
	for _, c := range []struct {
		name   string
		budget int64
		in     []pfRange
		want   [2]pfRange
	}{
		{"off", 0, []pfRange{o, g}, [2]pfRange{}},
		{"o_proj whole, gate/up's first 24 MiB", 32 * mib, []pfRange{o, g}, [2]pfRange{o, {g.ptr, 24 * mib}}},
		{"both whole", 100 * mib, []pfRange{o, g}, [2]pfRange{o, g}},
		{"the first cut", 5 * mib, []pfRange{o, g}, [2]pfRange{{o.ptr, 5 * mib}}},
		{"whole 16-byte units", 32 * mib, []pfRange{{0x10000, 1000}, {0x20000, 33}}, [2]pfRange{{0x10000, 992}, {0x20000, 32}}},
		{"a span under 16 bytes skipped", 32 * mib, []pfRange{{0x10000, 15}, g}, [2]pfRange{{g.ptr, 32 * mib}}},
		{"misaligned skipped", 32 * mib, []pfRange{{0x10008, 4096}, o}, [2]pfRange{o}},
		{"at most two", 100 * mib, []pfRange{o, o, g}, [2]pfRange{o, o}},
	} {
		if got := prefetchRanges(c.budget, spans(c.in...)); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
