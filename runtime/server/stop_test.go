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
	}{
		{nil, []string{"a", "b"}, "ab", false},
		{[]string{"END"}, []string{"hello E", "N", "D world"}, "hello ", true},
		{[]string{"END"}, []string{"hello E", "N", "x"}, "hello ENx", false},
		{[]string{"\n\n", "###"}, []string{"one\n", "\ntwo"}, "one", true},
		{[]string{"ab", "b"}, []string{"xa", "b"}, "x", true}, // the earliest match wins
		{[]string{"abc"}, []string{"ab"}, "ab", false},        // held text is flushed at the end
	} {
		s := stopper{stops: c.stops}
		var got strings.Builder
		for _, p := range c.pieces {
			got.WriteString(s.push(p))
		}
		got.WriteString(s.flush())
		if got.String() != c.want || s.stopped != c.stop {
			t.Errorf("stops %q pieces %q: %q (stopped %v), want %q (%v)", c.stops, c.pieces, got.String(), s.stopped, c.want, c.stop)
		}
	}
}
