package grammar

import (
	"slices"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// Vocab is the text of a vocabulary's tokens, bytes by token id, in a
// trie. Tokens without text (control tokens, added tokens, the unknown
// piece, holes) are not in it: a grammar never allows them, and a stop
// token is allowed only where the value is complete (Matcher.Allowed).
type Vocab struct {
	size int
	text []string // token id → its bytes ("" for none)
	all  trie     // every token with text
	// Inside a string, most tokens are plain: characters that leave the
	// string open (no '"', no '\\', no control character, whole UTF-8
	// characters). plain lists them with their characters (runes), in
	// plainMask too; rest is the trie of the others, which a string's
	// mask walks while the plain ones are set without a walk.
	plain     []int32
	runes     []int32
	plainMask []uint64
	rest      trie
}

// trie is a trie of token texts, its nodes in breadth-first order: node
// i's edges are edgeByte/edgeTo[first[i]:first[i+1]], sorted by byte, and
// the tokens whose text ends at node i are ids[idFirst[i]:idFirst[i+1]].
// Node 0 is the root.
type trie struct {
	first, idFirst []int32
	edgeByte       []byte
	edgeTo         []int32
	ids            []int32
}

// NewVocab makes the Vocab of a tokenizer: each token's bytes
// (Tokenizer.TokenBytes: a SentencePiece piece's text with "▁" as a
// space, a <0xNN> piece's byte, a byte-level piece's bytes).
func NewVocab(tok *tokenizer.Tokenizer) *Vocab { return NewVocabWith(tok, nil) }

// NewVocabWith is NewVocab with the tokens without text (added, control)
// whose piece is one of added (a model's tool-call markers: Qwen's
// <tool_call>, Mistral's [TOOL_CALLS]) as that text, so that a grammar
// may allow them where it allows their text.
func NewVocabWith(tok *tokenizer.Tokenizer, added []string) *Vocab {
	text := make([]string, tok.VocabSize())
	for id := range text {
		text[id] = string(tok.TokenBytes(id))
	}
	for _, a := range added {
		if id, ok := tok.TokenID(a); ok && text[id] == "" {
			text[id] = a
		}
	}
	return newVocab(text)
}

// newVocab builds the tries of texts (token id → bytes).
func newVocab(text []string) *Vocab {
	v := &Vocab{size: len(text), text: text, plainMask: make([]uint64, (len(text)+63)/64)}
	rest := make([]string, len(text))
	// A token is plain when it takes a string's characters state back to
	// itself, each character counted: the recognizer decides.
	str := &node{id: -3, kind: kString, maxLen: 1 << 30}
	for id, t := range text {
		f := &frame{up: done, n: str, op: opString}
		st := state{f}
		for i := 0; i < len(t) && len(st) > 0; i++ {
			st = st.step(nil, t[i], nil)
		}
		if t != "" && len(st) == 1 && st[0].op == opString && st[0].phase == strChar {
			v.plain = append(v.plain, int32(id))
			v.runes = append(v.runes, st[0].a)
			v.plainMask[id>>6] |= 1 << (id & 63)
		} else {
			rest[id] = t
		}
	}
	v.all = newTrie(text)
	v.rest = newTrie(rest)
	return v
}

// newTrie builds the trie of the non-empty texts.
func newTrie(text []string) trie {
	type tnode struct {
		next map[byte]*tnode
		ids  []int32
	}
	root := &tnode{}
	for id, t := range text {
		if t == "" {
			continue
		}
		n := root
		for i := 0; i < len(t); i++ {
			if n.next == nil {
				n.next = map[byte]*tnode{}
			}
			c, ok := n.next[t[i]]
			if !ok {
				c = &tnode{}
				n.next[t[i]] = c
			}
			n = c
		}
		n.ids = append(n.ids, int32(id))
	}
	var tr trie
	queue := []*tnode{root}
	for i := 0; i < len(queue); i++ {
		n := queue[i]
		tr.first = append(tr.first, int32(len(tr.edgeByte)))
		tr.idFirst = append(tr.idFirst, int32(len(tr.ids)))
		tr.ids = append(tr.ids, n.ids...)
		keys := make([]byte, 0, len(n.next))
		for c := range n.next {
			keys = append(keys, c)
		}
		slices.Sort(keys)
		for _, c := range keys {
			tr.edgeByte = append(tr.edgeByte, c)
			tr.edgeTo = append(tr.edgeTo, int32(len(queue)))
			queue = append(queue, n.next[c])
		}
	}
	tr.first = append(tr.first, int32(len(tr.edgeByte)))
	tr.idFirst = append(tr.idFirst, int32(len(tr.ids)))
	return tr
}

// Size returns the vocabulary size: a mask has (Size()+63)/64 words.
func (v *Vocab) Size() int { return v.size }

// Text returns token id's bytes ("" for a token without text).
func (v *Vocab) Text(id int) string {
	if id < 0 || id >= len(v.text) {
		return ""
	}
	return v.text[id]
}
