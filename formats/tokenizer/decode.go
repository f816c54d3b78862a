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
// U+FFFD per byte) and empties the decoder's buffer.
func (d *Decoder) Flush() string { return d.drain(true) }

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
