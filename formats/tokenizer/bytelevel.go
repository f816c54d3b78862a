package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// GPT-2's bytes_to_unicode (openai/gpt-2 encoder.py): the printable bytes
// '!'..'~', '¡'..'¬' and '®'..'ÿ' stand for themselves, the other 68 for
// U+0100 + n, n counting them in byte order ("Ġ" U+0120 is the space,
// "Ċ" U+010A the newline). Byte-level vocabularies spell every piece
// with these characters.
var (
	byteRune [256]rune    // byte → its character
	byteText [256]string  // byte → its character's UTF-8
	runeByte [0x144]int16 // character → byte, -1 for none
)

func init() {
	for i := range runeByte {
		runeByte[i] = -1
	}
	n := 0
	for b := range 256 {
		r := rune(b)
		if !(b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE) {
			r = rune(0x100 + n)
			n++
		}
		byteRune[b] = r
		byteText[b] = string(r)
		runeByte[r] = int16(b)
	}
}

// ByteLevelSpelling spells s as byte-level vocabularies spell their pieces
// (GPT-2's bytes_to_unicode, above): ByteLevelSpelling(" the") is "Ġthe",
// and the 256 one-byte strings give a byte-level vocabulary's base
// alphabet.
func ByteLevelSpelling(s string) string { return string(appendByteText(nil, s)) }

// appendByteText appends the byte-level spelling of s.
func appendByteText(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		dst = append(dst, byteText[s[i]]...)
	}
	return dst
}

// appendPieceBytes appends the bytes a byte-level piece stands for, as
// the ByteLevel decoder of HF tokenizers gives them: each character's
// byte, or, when one character is outside the byte alphabet (an added
// token's text), the piece's own UTF-8.
func appendPieceBytes(dst []byte, p string) []byte {
	n := len(dst)
	for _, r := range p {
		if r >= rune(len(runeByte)) || runeByte[r] < 0 {
			return append(dst[:n], p...)
		}
		dst = append(dst, byte(runeByte[r]))
	}
	return dst
}

// Split behaviours of HF tokenizers (SplitDelimiterBehavior).
type splitBehavior uint8

const (
	splitIsolated splitBehavior = iota
	splitRemoved
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

var splitBehaviors = map[string]splitBehavior{
	"Isolated": splitIsolated, "Removed": splitRemoved, "MergedWithPrevious": splitMergedWithPrevious,
	"MergedWithNext": splitMergedWithNext, "Contiguous": splitContiguous,
}

// stepKind is one pre-tokenizer of a Sequence.
type stepKind uint8

const (
	stepRegex     stepKind = iota // Split with a Regex pattern
	stepString                    // Split with a String pattern (a literal)
	stepDigits                    // Digits: Unicode N characters (Rust's char::is_numeric)
	stepPunct                     // Punctuation: ASCII punctuation or Unicode P
	stepByteLevel                 // ByteLevel: prefix space, GPT-2 split, byte spelling
)

// preStep is one pre-tokenizer; pieces pass through the steps in order.
type preStep struct {
	kind     stepKind
	re       *onigRegex
	lit      string
	behavior splitBehavior
	invert   bool
	// ByteLevel
	prefixSpace bool
	useRegex    bool
}

// preTokenizer is the pre_tokenizer of a byte-level BPE tokenizer: one
// ByteLevel step and the Splits (Digits, Punctuation) before or after it.
// Steps after ByteLevel see the byte spelling, as in HF tokenizers.
type preTokenizer struct {
	steps     []preStep
	byteLevel int // index of the ByteLevel step
}

// gpt2Pattern is the split of ByteLevel with use_regex (HF tokenizers'
// byte_level.rs, GPT-2's encoder.py plus a final \s+).
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

var gpt2Regex = mustCompileOnig(gpt2Pattern)

func mustCompileOnig(src string) *onigRegex {
	re, err := compileOnig(src)
	if err != nil {
		panic("tokenizer: " + src + ": " + err.Error())
	}
	return re
}

// isByteLevel reports whether a pre_tokenizer holds a ByteLevel step.
func isByteLevel(raw json.RawMessage) bool {
	if isNull(raw) {
		return false
	}
	var c hfComponent
	if json.Unmarshal(raw, &c) != nil {
		return false
	}
	if c.Type == "ByteLevel" {
		return true
	}
	for _, s := range c.PreTokenizers {
		if s.Type == "ByteLevel" {
			return true
		}
	}
	return false
}

// parseByteLevelPreTokenizer reads a ByteLevel pre_tokenizer or a
// Sequence of Split, Digits, Punctuation and exactly one ByteLevel.
func parseByteLevelPreTokenizer(raw json.RawMessage) (*preTokenizer, error) {
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	list, field := []hfComponent{c}, "pre_tokenizer"
	if c.Type == "Sequence" {
		list = c.PreTokenizers
	}
	pt := &preTokenizer{byteLevel: -1}
	for i, s := range list {
		f := field
		if c.Type == "Sequence" {
			f = fmt.Sprintf("pre_tokenizer.pretokenizers[%d]", i)
		}
		step, err := parsePreStep(s, f)
		if err != nil {
			return nil, err
		}
		if step.kind == stepByteLevel {
			if pt.byteLevel >= 0 {
				return nil, fmt.Errorf("%s: a second ByteLevel is not supported", f)
			}
			pt.byteLevel = len(pt.steps)
		}
		pt.steps = append(pt.steps, step)
	}
	if pt.byteLevel < 0 {
		return nil, errors.New("pre_tokenizer: no ByteLevel")
	}
	return pt, nil
}

func parsePreStep(c hfComponent, field string) (preStep, error) {
	behavior := func(def splitBehavior) (splitBehavior, error) {
		if c.Behavior == "" {
			return def, nil
		}
		b, ok := splitBehaviors[c.Behavior]
		if !ok {
			return 0, fmt.Errorf("%s.behavior %q: want Isolated, Removed, MergedWithPrevious, MergedWithNext or Contiguous", field, c.Behavior)
		}
		return b, nil
	}
	switch c.Type {
	case "ByteLevel":
		return preStep{kind: stepByteLevel, prefixSpace: c.AddPrefixSpace == nil || *c.AddPrefixSpace, useRegex: c.UseRegex == nil || *c.UseRegex}, nil
	case "Digits":
		b := splitContiguous
		if c.IndividualDigits {
			b = splitIsolated
		}
		return preStep{kind: stepDigits, behavior: b}, nil
	case "Punctuation":
		b, err := behavior(splitIsolated)
		return preStep{kind: stepPunct, behavior: b}, err
	case "Split":
		var pat struct {
			Regex  *string `json:"Regex"`
			String *string `json:"String"`
		}
		if err := json.Unmarshal(c.Pattern, &pat); err != nil || (pat.Regex == nil) == (pat.String == nil) {
			return preStep{}, fmt.Errorf("%s.pattern %s: want {\"Regex\": ...} or {\"String\": ...}", field, c.Pattern)
		}
		if c.Behavior == "" {
			return preStep{}, fmt.Errorf("%s.behavior: missing", field)
		}
		b, err := behavior(splitIsolated)
		if err != nil {
			return preStep{}, err
		}
		step := preStep{behavior: b, invert: c.Invert}
		if pat.String != nil {
			if *pat.String == "" {
				return preStep{}, fmt.Errorf("%s.pattern.String: empty", field)
			}
			step.kind, step.lit = stepString, *pat.String
			return step, nil
		}
		re, err := compileOnig(*pat.Regex)
		if err != nil {
			return preStep{}, fmt.Errorf("%s.pattern.Regex %q: %w", field, *pat.Regex, err)
		}
		step.kind, step.re = stepRegex, re
		return step, nil
	}
	return preStep{}, fmt.Errorf("%s: type %q is not supported with ByteLevel (want Split, Digits, Punctuation or ByteLevel)", field, c.Type)
}

// span is a piece of a pre-token: s[start:end], a match of the step's
// pattern or not.
type span struct {
	start, end int
	match      bool
}

// preScratch is the pre-tokenizer's scratch of one encode call.
type preScratch struct {
	m      onigMatcher
	spans  [][]span // per step
	pieces [][]span // per step, after the behaviour
	text   []byte   // a piece's byte spelling
}

// findSpans covers s with the matches of step and the text between them.
func (st *preStep) findSpans(m *onigMatcher, s string, out []span) []span {
	out = out[:0]
	prev := 0
	add := func(start, end int) {
		if prev < start {
			out = append(out, span{prev, start, st.invert})
		}
		out = append(out, span{start, end, !st.invert})
		prev = end
	}
	switch st.kind {
	case stepRegex:
		for i := 0; i < len(s); {
			start, end, ok := st.re.find(m, s, i)
			if !ok {
				break
			}
			add(start, end)
			i = end
		}
	case stepString:
		for i := 0; i < len(s); {
			j := strings.Index(s[i:], st.lit)
			if j < 0 {
				break
			}
			add(i+j, i+j+len(st.lit))
			i += j + len(st.lit)
		}
	case stepDigits, stepPunct:
		for i, r := range s {
			if st.kind == stepDigits && unicode.Is(unicode.N, r) ||
				st.kind == stepPunct && (r < utf8.RuneSelf && isASCIIPunct(byte(r)) || unicode.Is(unicode.P, r)) {
				add(i, i+utf8.RuneLen(r))
			}
		}
	}
	if prev < len(s) {
		out = append(out, span{prev, len(s), st.invert})
	}
	return out
}

func isASCIIPunct(c byte) bool {
	return c >= '!' && c <= '/' || c >= ':' && c <= '@' || c >= '[' && c <= '`' || c >= '{' && c <= '~'
}

// applyBehavior turns the spans of a split into the pieces the behaviour
// keeps (HF tokenizers' NormalizedString::split).
func applyBehavior(b splitBehavior, in []span, out []span) []span {
	out = out[:0]
	switch b {
	case splitIsolated:
		out = append(out, in...)
	case splitRemoved:
		for _, s := range in {
			if !s.match {
				out = append(out, s)
			}
		}
	case splitContiguous:
		prevMatch := false
		for _, s := range in {
			if s.match == prevMatch && len(out) > 0 {
				out[len(out)-1].end = s.end
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
	case splitMergedWithPrevious:
		prevMatch := false
		for _, s := range in {
			if s.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = s.end
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
	case splitMergedWithNext:
		// From the end: a match joins the piece after it unless that is a
		// match too.
		nextMatch := false
		for i := len(in) - 1; i >= 0; i-- {
			s := in[i]
			if s.match && !nextMatch && len(out) > 0 {
				out[len(out)-1].start = s.start
			} else {
				out = append(out, s)
			}
			nextMatch = s.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// run passes s through the steps from step on and calls emit with every
// final pre-token; mapped tells whether it is in the byte spelling
// already (false only when ByteLevel is the last step, so that the cache
// can be consulted before spelling it).
func (pt *preTokenizer) run(sc *preScratch, s string, step int, emit func(piece string, mapped bool)) {
	if s == "" {
		return
	}
	if step == len(pt.steps) {
		emit(s, true)
		return
	}
	st := &pt.steps[step]
	if st.kind == stepByteLevel {
		if st.prefixSpace && s[0] != ' ' {
			s = " " + s
		}
		last := step == len(pt.steps)-1
		each := func(p string) {
			if last {
				emit(p, false)
				return
			}
			pt.run(sc, string(appendByteText(nil, p)), step+1, emit)
		}
		if !st.useRegex {
			each(s)
			return
		}
		for i := 0; i < len(s); {
			start, end, ok := gpt2Regex.find(&sc.m, s, i)
			if !ok {
				each(s[i:])
				return
			}
			if i < start {
				each(s[i:start])
			}
			each(s[start:end])
			i = end
		}
		return
	}
	for len(sc.spans) <= step {
		sc.spans = append(sc.spans, nil)
		sc.pieces = append(sc.pieces, nil)
	}
	sc.spans[step] = st.findSpans(&sc.m, s, sc.spans[step])
	sc.pieces[step] = applyBehavior(st.behavior, sc.spans[step], sc.pieces[step])
	for _, p := range sc.pieces[step] {
		pt.run(sc, s[p.start:p.end], step+1, emit)
	}
}

// encodeByteLevel normalizes text (NFC when asked), pre-tokenizes it and
// appends the BPE ids of every pre-token, via the cache.
func (t *Tokenizer) encodeByteLevel(dst []int, text string, cache *chunkCache) []int {
	if t.nfc && !norm.NFC.IsNormalString(text) {
		text = norm.NFC.String(text)
	}
	sc := &cache.pre
	t.pre.run(sc, text, 0, func(p string, mapped bool) {
		ids, ok := cache.words[p]
		if !ok {
			w := p
			if !mapped {
				sc.text = appendByteText(sc.text[:0], p)
				w = string(sc.text)
			}
			ids = t.bpeWord(w)
			if len(p) <= 64 {
				cache.words[p] = ids
			}
		}
		for _, id := range ids {
			dst = append(dst, int(id))
		}
	})
	return dst
}

// bpeWord is BPE over one pre-token in the byte spelling; with
// ignore_merges a pre-token that is itself a piece is taken whole.
func (t *Tokenizer) bpeWord(w string) []int32 {
	if t.ignoreMerges {
		if id, ok := t.ids[w]; ok && int(id) < len(t.pieces) {
			return []int32{id}
		}
	}
	return t.bpe(w)
}
