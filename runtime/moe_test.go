package runtime

import (
	"slices"
	"testing"
)

// TestExpertOrder checks ExpertOrder against lists worked out by hand: the
// slots by expert with ties in slot order and -1 last, then the runs (an
// expert of ten slots in a run of eight and one of two), -1 after them.
func TestExpertOrder(t *testing.T) {
	for _, tc := range []struct {
		ids     []int32
		experts int
		order   []int32
		runs    [][3]int // start, count, expert
	}{
		{[]int32{1, 0}, 8, []int32{1, 0}, [][3]int{{0, 1, 0}, {1, 1, 1}}},
		{[]int32{0, 2, 1, 2, -1, 3}, 4, []int32{0, 2, 1, 3, 5, 4}, [][3]int{{0, 1, 0}, {1, 1, 1}, {2, 2, 2}, {4, 1, 3}}},
		{[]int32{-1, -1}, 4, []int32{0, 1}, nil},
		{
			[]int32{3, 1, 3, 3, 3, 0, 3, 3, 3, 3, 3, 3, -1, 3}, 4,
			[]int32{5, 1, 0, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 12},
			[][3]int{{0, 1, 0}, {1, 1, 1}, {2, 8, 3}, {10, 3, 3}},
		},
	} {
		got := make([]int32, 2*len(tc.ids))
		ExpertOrder(tc.ids, tc.experts, got)
		want := slices.Clone(tc.order)
		for _, r := range tc.runs {
			want = append(want, ExpertRunCode(r[0], r[1], r[2]))
		}
		for len(want) < len(got) {
			want = append(want, -1)
		}
		if !slices.Equal(got, want) {
			t.Errorf("ids %v: order %v, want %v", tc.ids, got, want)
		}
	}
	if c := ExpertRunCode(1023, 8, 255); c&2047 != 1023 || c>>11&15 != 8 || c>>15 != 255 {
		t.Errorf("ExpertRunCode(1023, 8, 255) = %#x", c)
	}
}
