package server

import "strings"

// stopper holds back generated text that could be the start of a stop
// string, so that a stop string split across tokens is honoured and never
// emitted. Push takes the next decoded text and returns what can be
// emitted now; stopped reports that a stop string was found (the text
// before it has been returned, the rest is dropped).
//
// Text pushed unarmed (the first min_tokens tokens') is never matched
// alone: a stop string must end past it, as vLLM checks stop strings only
// once more than min_tokens tokens were generated, in the text they added
// (a stop string may start in the text before).
type stopper struct {
	stops   []string
	held    string
	guarded int // the bytes at the start of held pushed unarmed
	stopped bool
}

func (s *stopper) push(text string, armed bool) string {
	if s.stopped {
		return ""
	}
	if len(s.stops) == 0 {
		return text
	}
	buf := s.held + text
	guard := s.guarded
	if !armed {
		guard = len(buf)
	}
	cut := -1
	for _, st := range s.stops {
		// The first match that ends past the guarded text.
		from := max(0, guard-len(st)+1)
		if i := strings.Index(buf[from:], st); i >= 0 && (cut < 0 || from+i < cut) {
			cut = from + i
		}
	}
	if cut >= 0 {
		s.stopped, s.held, s.guarded = true, "", 0
		return buf[:cut]
	}
	// Keep the longest tail of buf that is a prefix of some stop string.
	keep := 0
	for _, st := range s.stops {
		for n := min(len(st)-1, len(buf)); n > keep; n-- {
			if strings.HasSuffix(buf, st[:n]) {
				keep = n
				break
			}
		}
	}
	s.held = buf[len(buf)-keep:]
	s.guarded = max(0, guard-(len(buf)-keep))
	return buf[:len(buf)-keep]
}

// flush returns what is held at the end of the generation.
func (s *stopper) flush() string {
	if s.stopped {
		return ""
	}
	h := s.held
	s.held, s.guarded = "", 0
	return h
}
