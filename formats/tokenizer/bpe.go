package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// chunkCache is the state of one encode call: the ids of the words (or
// byte-level pre-tokens) already seen, and the pre-tokenizer's scratch.
type chunkCache struct {
	words map[string][]int32
	pre   preScratch
}

func newChunkCache(textLen int) *chunkCache {
	if textLen < 256 {
		return &chunkCache{words: make(map[string][]int32)}
	}
	return &chunkCache{words: make(map[string][]int32, textLen/32)}
}

// normalize applies the normalizer: optional whitespace collapsing, the
// dummy-prefix "▁" and the space escape. Empty text stays empty.
func (t *Tokenizer) normalize(text string, atStart bool) string {
	if t.collapseWS {
		text = collapseSpaces(text)
	}
	if text == "" {
		return ""
	}
	if t.escapeWS {
		text = strings.ReplaceAll(text, " ", spaceSym)
	}
	if t.prepend == prependAlways || t.prepend == prependFirst && atStart {
		text = spaceSym + text
	}
	return text
}

// collapseSpaces is SentencePiece's remove_extra_whitespaces: leading and
// trailing spaces dropped, inner runs of spaces made one.
func collapseSpaces(s string) string {
	s = strings.Trim(s, " ")
	if !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	prevSpace := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' && prevSpace {
			continue
		}
		prevSpace = c == ' '
		b.WriteByte(c)
	}
	return b.String()
}

// encodeSegment normalizes text (no added tokens in it) and appends its ids.
func (t *Tokenizer) encodeSegment(dst []int, text string, atStart bool, cache *chunkCache) []int {
	if t.pre != nil {
		return t.encodeByteLevel(dst, text, cache)
	}
	norm := t.normalize(text, atStart)
	if norm == "" {
		return dst
	}
	if !t.chunkSafe && !t.splitMeta {
		return t.appendWord(dst, norm, cache)
	}
	// Split into words before a "▁" that follows a non-"▁" (or before every
	// "▁" with Metaspace split). When no piece contains "▁" after another
	// character (chunkSafe, checked at load), no merge can cross such a
	// boundary, so BPE per word gives the same symbols as over the whole text
	// and merges in different words never interact.
	start := 0
	for i := 1; i < len(norm); i++ {
		if norm[i] != 0xE2 || !strings.HasPrefix(norm[i:], spaceSym) {
			continue
		}
		if !t.splitMeta && strings.HasSuffix(norm[:i], spaceSym) {
			continue
		}
		dst = t.appendWord(dst, norm[start:i], cache)
		start = i
	}
	return t.appendWord(dst, norm[start:], cache)
}

// appendWord appends the ids of one word, via the cache.
func (t *Tokenizer) appendWord(dst []int, w string, cache *chunkCache) []int {
	if ids, ok := cache.words[w]; ok {
		for _, id := range ids {
			dst = append(dst, int(id))
		}
		return dst
	}
	ids := t.bpe(w)
	if len(w) <= 64 {
		cache.words[w] = ids
	}
	for _, id := range ids {
		dst = append(dst, int(id))
	}
	return dst
}

// symbol is a run of the word being merged; symbols form a linked list.
type symbol struct {
	start, end int32
	id         int32 // -1: a character with no piece; -2: merged away
	prev, next int32
}

// candidate is a possible merge of symbols left and right.
type candidate struct {
	prio        float64
	left, right int32
	lid, rid    int32
	mid         int32
}

// before orders candidates: higher priority first, leftmost on ties
// (SentencePiece bpe_model.cc and HF tokenizers' BPE agree on this).
func (a candidate) before(b candidate) bool {
	if a.prio != b.prio {
		return a.prio > b.prio
	}
	return a.left < b.left
}

type agenda []candidate

func (h *agenda) push(c candidate) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].before(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *agenda) pop() candidate {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s[r].before(s[l]) {
			m = r
		}
		if !s[m].before(s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// bpe merges the characters of w, best pair first, and maps the resulting
// symbols to ids with byte fallback.
func (t *Tokenizer) bpe(w string) []int32 {
	syms := make([]symbol, 0, len(w))
	for i := 0; i < len(w); {
		_, n := utf8.DecodeRuneInString(w[i:])
		id, ok := t.ids[w[i:i+n]]
		if !ok {
			id = -1
		}
		k := int32(len(syms))
		syms = append(syms, symbol{start: int32(i), end: int32(i + n), id: id, prev: k - 1, next: k + 1})
		i += n
	}
	syms[len(syms)-1].next = -1
	var ag agenda
	try := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		lid, rid := syms[l].id, syms[r].id
		if lid < 0 || rid < 0 {
			return
		}
		m, ok := t.merges[uint64(uint32(lid))<<32|uint64(uint32(rid))]
		if !ok {
			return
		}
		ag.push(candidate{prio: m.prio, left: l, right: r, lid: lid, rid: rid, mid: m.id})
	}
	for i := int32(0); i+1 < int32(len(syms)); i++ {
		try(i, i+1)
	}
	var rev map[int32][2]int32
	for len(ag) > 0 {
		c := ag.pop()
		l, r := &syms[c.left], &syms[c.right]
		if l.id != c.lid || r.id != c.rid || l.next != c.right {
			continue // stale: one side was merged since
		}
		if t.revMerge != nil {
			if _, unused := t.revMerge[c.mid]; unused {
				if rev == nil {
					rev = make(map[int32][2]int32)
				}
				rev[c.mid] = [2]int32{c.lid, c.rid}
			}
		}
		l.end = r.end
		l.id = c.mid
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = c.left
		}
		r.id = -2
		try(l.prev, c.left)
		try(c.left, l.next)
	}
	out := make([]int32, 0, len(syms))
	for i := int32(0); i >= 0; i = syms[i].next {
		s := syms[i]
		out = t.emit(out, w[s.start:s.end], s.id, rev)
	}
	return out
}

// emit appends the ids of one final symbol: its id, the pair that built it
// when it is an UNUSED piece (SentencePiece's ResegmentSymbol), or its bytes
// as <0xNN> pieces (byte fallback), or <unk>.
func (t *Tokenizer) emit(out []int32, text string, id int32, rev map[int32][2]int32) []int32 {
	if id >= 0 && int(id) < len(t.pieces) {
		if pair, ok := rev[id]; ok {
			n := len(t.symbolText(pair[0]))
			if n > len(text) {
				n = len(text)
			}
			out = t.emit(out, text[:n], pair[0], rev)
			return t.emit(out, text[n:], pair[1], rev)
		}
		return append(out, id)
	}
	if t.byteFallback {
		for i := 0; i < len(text); i++ {
			b := t.byteID[text[i]]
			if b < 0 {
				return t.appendUnk(out)
			}
			out = append(out, b)
		}
		return out
	}
	return t.appendUnk(out)
}

func (t *Tokenizer) appendUnk(out []int32) []int32 {
	if t.unk < 0 {
		return out
	}
	if t.fuseUnk && len(out) > 0 && out[len(out)-1] == t.unk {
		return out
	}
	return append(out, t.unk)
}

// symbolText returns the text of a BPE symbol id, pseudo ids included.
func (t *Tokenizer) symbolText(id int32) string {
	if id >= pseudoBase {
		return t.pseudo[id-pseudoBase]
	}
	return t.pieces[id]
}
