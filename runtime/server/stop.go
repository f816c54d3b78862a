package server

import "strings"

// stopper holds back generated text that could be the start of a stop
// string, so that a stop string split across tokens is honoured and never
// emitted. Push takes the next decoded text and returns what can be
// emitted now; stopped reports that a stop string was found (the text
// before it has been returned, the rest is dropped).
type stopper struct {
	stops   []string
	held    string
	stopped bool
}

func (s *stopper) push(text string) string {
	if s.stopped {
		return ""
	}
	if len(s.stops) == 0 {
		return text
	}
	buf := s.held + text
	cut := -1
	for _, st := range s.stops {
		if i := strings.Index(buf, st); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		s.stopped, s.held = true, ""
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
	return buf[:len(buf)-keep]
}

// flush returns what is held at the end of the generation.
func (s *stopper) flush() string {
	if s.stopped {
		return ""
	}
	h := s.held
	s.held = ""
	return h
}
