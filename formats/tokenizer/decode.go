package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Decode turns ids into text with SentencePiece's rules: "▁" becomes a
// space, runs of <0xNN> pieces are reassembled into UTF-8 (each byte that
// does not form a valid character becomes U+FFFD), and one leading space is
// dropped at the start of the text, since encoding put a "▁" there. Control
// tokens (BOS <s>, EOS </s>) render as nothing; other added tokens
// (<|end_of_turn|>, <unk>) render as their content. After a control or added
// token, with the legacy Llama normalizer that prepends "▁" to every segment,
// one leading space is dropped again, so Decode inverts EncodeSpecial and
// EncodeChat. An id out of range is an error wrapping ErrUnknownID.
//
// For valid UTF-8 s without U+2581, Decode(Encode(s)) == s.
//
// A byte-level tokenizer's ids decode as HF tokenizers' ByteLevel decoder
// decodes them (transformers' decode, skip_special_tokens false): every
// piece, added tokens' text included, is mapped back to the bytes its
// characters stand for (a piece with a character outside the byte
// alphabet gives its own UTF-8), and the bytes become text as Rust's
// String::from_utf8_lossy makes it, one U+FFFD for each maximal invalid
// sequence. The BOS token alone renders as nothing, as SentencePiece's
// <s> does, so that Decode(EncodePrompt(s)) == s; for every valid UTF-8 s
// (and NFC s where the normalizer is NFC), Decode(Encode(s)) == s.
// tokenizer_config.json's clean_up_tokenization_spaces (true for Llama 3,
// which makes transformers' decode turn " ," into ",") is not applied, as
// vLLM's detokenizer does not apply it.
func (t *Tokenizer) Decode(ids []int) (string, error) {
	d := t.NewDecoder()
	var b strings.Builder
	for i, id := range ids {
		s, err := d.Add(id)
		if err != nil {
			return "", fmt.Errorf("tokenizer: decode: ids[%d]: %w", i, err)
		}
		b.WriteString(s)
	}
	b.WriteString(d.Flush())
	return b.String(), nil
}

// Decoder decodes a stream of ids incrementally: the strings returned by Add
// and a final Flush concatenate to Decode of the whole stream, and no string
// ends in the middle of a UTF-8 character. A Decoder is not safe for
// concurrent use.
type Decoder struct {
	t       *Tokenizer
	pending []byte // bytes of <0xNN> pieces that do not yet form a character
	atStart bool   // the next text piece loses one leading space
}

// NewDecoder returns a Decoder at the start of a text.
func (t *Tokenizer) NewDecoder() *Decoder {
	return &Decoder{t: t, atStart: t.prepend != prependNever}
}

// Continue makes d decode as inside a text: the next text piece keeps its
// leading space (an output whose bytes a grammar chose, a guided choice's
// text, is not the start of a text the encoder made).
func (d *Decoder) Continue() { d.atStart = false }

// Add decodes one more id and returns the text it completes, possibly "".
// An id out of range is an error wrapping ErrUnknownID; the decoder is left
// unchanged then.
func (d *Decoder) Add(id int) (string, error) {
	t := d.t
	if id < 0 || id >= len(t.pieces) || t.kinds[id] == kindUnused {
		return "", fmt.Errorf("id %d (vocabulary size %d): %w", id, len(t.pieces), ErrUnknownID)
	}
	if t.pre != nil {
		if id == t.bos && t.kinds[id] != kindNormal {
			return "", nil
		}
		d.pending = appendPieceBytes(d.pending, t.pieces[id])
		return d.drainLossy(false), nil
	}
	switch t.kinds[id] {
	case kindByte:
		d.atStart = false
		b, _ := parseBytePiece(t.pieces[id])
		d.pending = append(d.pending, b)
		return d.drain(false), nil
	case kindControl:
		out := d.drain(true)
		d.atStart = t.prepend == prependAlways || t.prepend == prependFirst && d.atStart
		return out, nil
	case kindAdded:
		out := d.drain(true) + t.pieces[id]
		d.atStart = t.prepend == prependAlways
		return out, nil
	}
	out := d.drain(true)
	p := t.pieces[id]
	if d.atStart {
		p = strings.TrimPrefix(p, spaceSym)
		d.atStart = false
	}
	return out + strings.ReplaceAll(p, spaceSym, " "), nil
}

// Flush returns the bytes still held (an incomplete UTF-8 character, as
// U+FFFD per byte, or one U+FFFD for a byte-level tokenizer) and empties
// the decoder's buffer.
func (d *Decoder) Flush() string {
	if d.t.pre != nil {
		return d.drainLossy(true)
	}
	return d.drain(true)
}

// drain returns the pending bytes that form characters; with final, an
// incomplete trailing character too, as U+FFFD per byte.
func (d *Decoder) drain(final bool) string {
	if len(d.pending) == 0 {
		return ""
	}
	var b strings.Builder
	p := d.pending
	for len(p) > 0 {
		r, n := utf8.DecodeRune(p)
		if r == utf8.RuneError && n <= 1 {
			if !final && !utf8.FullRune(p) {
				break
			}
			b.WriteRune(utf8.RuneError)
			p = p[1:]
			continue
		}
		b.Write(p[:n])
		p = p[n:]
	}
	d.pending = append(d.pending[:0], p...)
	return b.String()
}

// drainLossy returns the pending bytes that form text as
// String::from_utf8_lossy makes it: each maximal sequence that starts a
// valid encoding but breaks off (or a byte that starts none) becomes one
// U+FFFD. Without final, a trailing sequence that may still complete is
// held back.
func (d *Decoder) drainLossy(final bool) string {
	p := d.pending
	if len(p) == 0 {
		return ""
	}
	var b strings.Builder
	for len(p) > 0 {
		if p[0] < utf8.RuneSelf {
			b.WriteByte(p[0])
			p = p[1:]
			continue
		}
		if !utf8.FullRune(p) {
			if !final {
				break
			}
			b.WriteRune(utf8.RuneError) // cut off at the end: one U+FFFD
			p = nil
			break
		}
		r, n := utf8.DecodeRune(p)
		if r != utf8.RuneError || n > 1 {
			b.Write(p[:n])
			p = p[n:]
			continue
		}
		b.WriteRune(utf8.RuneError)
		p = p[maximalSubpart(p):]
	}
	d.pending = append(d.pending[:0], p...)
	return b.String()
}

// maximalSubpart is the length of the longest prefix of p that starts a
// valid UTF-8 encoding, at least 1 (Unicode §3.9, U+FFFD substitution of
// maximal subparts); p holds no valid character at its start.
func maximalSubpart(p []byte) int {
	need, lo, hi := 0, byte(0x80), byte(0xBF)
	switch c := p[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(p); k++ {
		c := p[n]
		if k == 0 && (c < lo || c > hi) || k > 0 && (c < 0x80 || c > 0xBF) {
			return n
		}
		n++
	}
	return n
}
