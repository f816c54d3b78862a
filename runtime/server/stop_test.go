package server

import (
	"strings"
	"testing"
)

func TestStopper(t *testing.T) {
	for _, c := range []struct {
		stops  []string
		pieces []string
		want   string
		stop   bool
		min    int // the pieces pushed unarmed (min_tokens)
	}{
		{nil, []string{"a", "b"}, "ab", false, 0},
		{[]string{"END"}, []string{"hello E", "N", "D world"}, "hello ", true, 0},
		{[]string{"END"}, []string{"hello E", "N", "x"}, "hello ENx", false, 0},
		{[]string{"\n\n", "###"}, []string{"one\n", "\ntwo"}, "one", true, 0},
		{[]string{"ab", "b"}, []string{"xa", "b"}, "x", true, 0}, // the earliest match wins
		{[]string{"abc"}, []string{"ab"}, "ab", false, 0},        // held text is flushed at the end
		// Under min_tokens a stop string is passed; one ending past it stops.
		{[]string{"."}, []string{".", "a", "b.", "c"}, ".ab", true, 2},
		{[]string{"END"}, []string{"x E", "ND", "y"}, "x ", true, 1}, // a match may start in the unarmed text
		{[]string{"END"}, []string{"x END", "y"}, "x ENDy", false, 1},
		{[]string{"abc", "b"}, []string{"ab", "x"}, "abx", false, 1}, // held unarmed text is not matched alone
	} {
		s := stopper{stops: c.stops}
		var got strings.Builder
		for i, p := range c.pieces {
			got.WriteString(s.push(p, i >= c.min))
		}
		got.WriteString(s.flush())
		if got.String() != c.want || s.stopped != c.stop {
			t.Errorf("stops %q pieces %q: %q (stopped %v), want %q (%v)", c.stops, c.pieces, got.String(), s.stopped, c.want, c.stop)
		}
	}
}
