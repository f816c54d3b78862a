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
//
// A fence (a native tool-call format's trigger) ends the text stop
// strings apply to: a tool-calling reply's text before its calls is
// matched, its calls (from the trigger on) never are, so that a stop
// string cuts the model's text but not a call's JSON. A possible start of
// the fence is held until what follows says; with fenceAtStart (Llama 3's
// "{") only a reply that starts with it, after whitespace, is fenced
// (whitespace at the start is held until then).
type stopper struct {
	stops        []string
	fence        string
	fenceAtStart bool
	fenced       bool // the fence came: the rest passes as it is
	held         string
	guarded      int // the bytes at the start of held pushed unarmed
	stopped      bool
}

func (s *stopper) push(text string, armed bool) string {
	if s.stopped {
		return ""
	}
	if len(s.stops) == 0 {
		return text
	}
	buf := s.held + text
	if s.fenced {
		s.held, s.guarded = "", 0
		return buf
	}
	guard := s.guarded
	if !armed {
		guard = len(buf)
	}
	// Stop strings are matched in buf[:limit]; fenced: the fence starts
	// at limit.
	limit, fenced := len(buf), false
	switch {
	case s.fence == "":
	case s.fenceAtStart:
		t := strings.TrimLeft(buf, " \t\r\n")
		switch {
		case t == "":
			s.held, s.guarded = buf, guard
			return ""
		case strings.HasPrefix(t, s.fence):
			limit, fenced = 0, true // (the whitespace before the call too)
		default:
			s.fence = "" // (text: no call can follow)
		}
	default:
		if i := strings.Index(buf, s.fence); i >= 0 {
			limit, fenced = i, true
			break
		}
		for n := min(len(s.fence)-1, len(buf)); n > 0; n-- {
			if strings.HasSuffix(buf, s.fence[:n]) {
				limit = len(buf) - n
				break
			}
		}
	}
	cut := -1
	for _, st := range s.stops {
		// The first match that ends past the guarded text.
		from := max(0, guard-len(st)+1)
		if from > limit {
			continue
		}
		if i := strings.Index(buf[from:limit], st); i >= 0 && (cut < 0 || from+i < cut) {
			cut = from + i
		}
	}
	if cut >= 0 {
		s.stopped, s.held, s.guarded = true, "", 0
		return buf[:cut]
	}
	if fenced {
		s.fenced, s.held, s.guarded = true, "", 0
		return buf
	}
	// Keep the longest tail of buf[:limit] that is a prefix of some stop
	// string, and what follows it.
	keep := 0
	for _, st := range s.stops {
		for n := min(len(st)-1, limit); n > keep; n-- {
			if strings.HasSuffix(buf[:limit], st[:n]) {
				keep = n
				break
			}
		}
	}
	from := limit - keep
	s.held = buf[from:]
	s.guarded = max(0, guard-from)
	return buf[:from]
}

// flush returns what is held at the end of the generation: with a fence,
// what was held as its possible start (or, at the start, as whitespace
// before it) is matched now that no fence follows.
func (s *stopper) flush() string {
	if s.stopped {
		return ""
	}
	h, guard := s.held, s.guarded
	s.held, s.guarded = "", 0
	if s.fence == "" || s.fenced {
		return h
	}
	cut := -1
	for _, st := range s.stops {
		from := max(0, guard-len(st)+1)
		if from > len(h) {
			continue
		}
		if i := strings.Index(h[from:], st); i >= 0 && (cut < 0 || from+i < cut) {
			cut = from + i
		}
	}
	if cut >= 0 {
		s.stopped = true
		return h[:cut]
	}
	return h
}
