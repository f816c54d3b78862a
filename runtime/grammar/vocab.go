package grammar

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// Vocab is the text of a vocabulary's tokens, bytes by token id, in a
// trie. Tokens without text (control tokens, added tokens, the unknown
// piece, holes) are not in it: a grammar never allows them, and a stop
// token is allowed only where the value is complete (Matcher.Allowed).
type Vocab struct {
	size int
	text []string // token id → its bytes ("" for none)
	// The trie, its nodes in breadth-first order: node i's edges are
	// edges[first[i]:first[i+1]], sorted by byte, and the tokens whose
	// text ends at node i are ids[idFirst[i]:idFirst[i+1]]. Node 0 is the
	// root.
	first, idFirst []int32
	edgeByte       []byte
	edgeTo         []int32
	ids            []int32
}

// NewVocab makes the Vocab of a tokenizer's entries (VocabEntries): a
// normal piece's text with "▁" as a space, a <0xNN> piece's byte.
func NewVocab(entries []tokenizer.VocabEntry) (*Vocab, error) {
	text := make([]string, len(entries))
	for id, e := range entries {
		switch e.Type {
		case tokenizer.TokenTypeNormal:
			text[id] = strings.ReplaceAll(e.Piece, "\u2581", " ")
		case tokenizer.TokenTypeByte:
			v, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(e.Piece, "<0x"), ">"), 16, 8)
			if err != nil || len(e.Piece) != 6 {
				return nil, fmt.Errorf("grammar: token %d: byte piece %q is not <0xNN>", id, e.Piece)
			}
			text[id] = string([]byte{byte(v)})
		}
	}
	return newVocab(text), nil
}

// newVocab builds the trie of texts (token id → bytes).
func newVocab(text []string) *Vocab {
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
	v := &Vocab{size: len(text), text: text}
	queue := []*tnode{root}
	for i := 0; i < len(queue); i++ {
		n := queue[i]
		v.first = append(v.first, int32(len(v.edgeByte)))
		v.idFirst = append(v.idFirst, int32(len(v.ids)))
		v.ids = append(v.ids, n.ids...)
		keys := make([]byte, 0, len(n.next))
		for c := range n.next {
			keys = append(keys, c)
		}
		slices.Sort(keys)
		for _, c := range keys {
			v.edgeByte = append(v.edgeByte, c)
			v.edgeTo = append(v.edgeTo, int32(len(queue)))
			queue = append(queue, n.next[c])
		}
	}
	v.first = append(v.first, int32(len(v.edgeByte)))
	v.idFirst = append(v.idFirst, int32(len(v.ids)))
	return v
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
