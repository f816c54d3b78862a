package tokenizer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gptqtool/gptqtool/formats/jinja"
)

// ErrInvalidUTF8 is returned (wrapped) when text to encode is not valid UTF-8.
var ErrInvalidUTF8 = errors.New("text is not valid utf-8")

// ErrUnknownID is returned (wrapped) when an id to decode is outside the vocabulary.
var ErrUnknownID = errors.New("token id out of range")

// spaceSym is SentencePiece's whitespace marker, U+2581 LOWER ONE EIGHTH BLOCK.
const spaceSym = "▁"

// Token kinds.
const (
	kindNormal  uint8 = iota // a BPE piece
	kindByte                 // <0xNN> byte-fallback piece
	kindControl              // <s>, </s>: decodes to nothing
	kindAdded                // an added token (or <unk>): decodes to its content
	kindUnused               // a hole in the id space (no piece)
)

// prepend schemes: when "▁" is put in front of a text segment.
const (
	prependAlways = iota // every segment between added tokens (legacy Llama)
	prependFirst         // only a segment at the very start of the input
	prependNever
)

// addedToken is a token matched as a whole in the input text before BPE.
type addedToken struct {
	content string
	id      int
	special bool
	lstrip  bool // swallow whitespace on the left when matched
	rstrip  bool // swallow whitespace on the right when matched
	single  bool // match only as a whole word
}

// merge is the result of merging a pair of adjacent symbols.
type merge struct {
	prio float64 // higher merges first: piece score (SentencePiece) or -rank (HF)
	id   int32   // id of the merged symbol
}

// Tokenizer is a loaded BPE tokenizer, SentencePiece-style (Llama 2,
// Mistral) or byte-level (GPT-2, Llama 3, Qwen2). It is immutable after
// loading and safe for concurrent use.
type Tokenizer struct {
	pieces []string         // id -> piece text (content for added tokens); "" for holes
	kinds  []uint8          // id -> kind*
	ids    map[string]int32 // BPE symbol text -> id; includes pseudo ids >= len(pieces)
	merges map[uint64]merge // (left<<32 | right) -> merge
	pseudo []string         // text of pseudo id pseudoBase+i: a character in no piece but inside one
	byteID [256]int32       // byte -> id of <0xNN>, -1 when absent
	unk    int32            // id of the unknown piece, -1 when absent

	byteFallback bool
	fuseUnk      bool
	// unused marks ids of SentencePiece UNUSED pieces: BPE may build them but
	// they are split back into the pair that built them (revMerge).
	revMerge map[int32][2]int32

	added      []addedToken // longest content first
	addedIDs   map[int32]bool
	prepend    int  // prepend* scheme
	escapeWS   bool // replace " " with "▁"
	collapseWS bool // SentencePiece remove_extra_whitespaces
	splitMeta  bool // HF Metaspace split=true: a new word before every "▁"
	chunkSafe  bool // no piece has "▁" after a non-"▁": BPE may run per word

	// Byte-level BPE (GPT-2, Llama 3, Qwen2): pieces are spelt with GPT-2's
	// bytes_to_unicode characters; pre is the pre_tokenizer, nil for the
	// SentencePiece kind.
	pre          *preTokenizer
	nfc          bool // NFC normalizer
	ignoreMerges bool // a pre-token that is a piece is taken whole
	// tmplBOS and tmplEOS are the ids the post_processor's template puts
	// before and after the text (-1 for none); explicitAdd records that
	// tokenizer_config.json set add_bos_token or add_eos_token, which
	// then decide instead (transformers 5 rebuilds the template).
	tmplBOS, tmplEOS int
	explicitAdd      bool
	// bosDecided and eosDecided record that the template or
	// tokenizer_config.json decides addBOS and addEOS (AddSpecialDecided).
	bosDecided, eosDecided bool
	// mergeText is a byte-level model.merges as "a b" strings, in file
	// order, duplicates kept (MergeList).
	mergeText []string
	pad       int // pad_token's id, -1 when none

	bos, eos         int
	addBOS, addEOS   bool
	chatTemplate     string
	chatJinja        *jinja.Template // chatTemplate parsed, when it is not openchat's
	chatJinjaErr     error           // why chatTemplate could not be parsed
	chatTemplateFile string          // file chatTemplate came from, for errors
	namedTemplates   []NamedTemplate // chat_template's named entries but "default", in file order
	source           string          // file the vocabulary came from, for errors
}

// NamedTemplate is one entry of a chat_template given as a list of named
// templates (transformers' {"name", "template"}).
type NamedTemplate struct {
	Name, Template string
}

// Load reads the tokenizer in dir: tokenizer.json when present, else
// tokenizer.model plus added_tokens.json (when present); then
// special_tokens_map.json and tokenizer_config.json (add_bos_token,
// add_eos_token, bos_token, eos_token, added_tokens_decoder, chat_template)
// when present. Without tokenizer_config.json, BOS is added (LlamaTokenizer's
// default) unless tokenizer.json's post_processor says otherwise.
func Load(dir string) (*Tokenizer, error) {
	var t *Tokenizer
	var err error
	jsonPath := filepath.Join(dir, "tokenizer.json")
	if _, statErr := os.Stat(jsonPath); statErr == nil {
		t, err = LoadJSON(jsonPath)
	} else {
		modelPath := filepath.Join(dir, "tokenizer.model")
		if _, statErr2 := os.Stat(modelPath); statErr2 != nil {
			switch fi, err := os.Stat(dir); {
			case err != nil:
				return nil, fmt.Errorf("tokenizer: %w", err)
			case !fi.IsDir():
				return nil, fmt.Errorf("tokenizer: %s is a file, not a directory holding tokenizer.json or tokenizer.model", dir)
			}
			return nil, fmt.Errorf("tokenizer: %s: neither tokenizer.json nor tokenizer.model found", dir)
		}
		t, err = LoadSentencePiece(modelPath)
		if err == nil {
			err = t.loadAddedTokensJSON(filepath.Join(dir, "added_tokens.json"))
		}
	}
	if err != nil {
		return nil, err
	}
	if err := t.loadConfigs(dir); err != nil {
		return nil, err
	}
	return t, nil
}

// BOS returns the id of the beginning-of-sequence token, -1 when there is none.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the id of the end-of-sequence token (tokenizer_config's
// eos_token: <|end_of_turn|> for openchat), -1 when there is none.
func (t *Tokenizer) EOS() int { return t.eos }

// AddBOS reports whether BOS is put before encoded prompts (add_bos_token,
// or the post_processor's template): never when there is no BOS token.
func (t *Tokenizer) AddBOS() bool { return t.addBOS && t.bos >= 0 }

// AddEOS reports whether EOS is put after encoded prompts (add_eos_token).
func (t *Tokenizer) AddEOS() bool { return t.addEOS }

// VocabSize returns the number of ids, added tokens included (32002 for openchat-3.5).
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// ChatTemplate returns tokenizer_config.json's chat_template, "" when absent
// (of a list of named templates, the one named "default").
func (t *Tokenizer) ChatTemplate() string { return t.chatTemplate }

// NamedChatTemplates returns the other templates of a chat_template given
// as a list of named templates (tool_use, rag, ...), in file order; nil for
// a plain chat_template.
func (t *Tokenizer) NamedChatTemplates() []NamedTemplate { return slices.Clone(t.namedTemplates) }

// TokenID returns the id of a piece ("▁Hello", "<0x0A>"; byte-level "ĠHello",
// "Ċ") or added token ("<|end_of_turn|>").
func (t *Tokenizer) TokenID(piece string) (int, bool) {
	for _, a := range t.added {
		if a.content == piece {
			return a.id, true
		}
	}
	if b, ok := parseBytePiece(piece); ok && t.byteID[b] >= 0 {
		return int(t.byteID[b]), true
	}
	id, ok := t.ids[piece]
	if !ok || int(id) >= len(t.pieces) {
		return 0, false
	}
	return int(id), true
}

// Piece returns the piece of id as stored in the vocabulary ("▁Hello",
// "<0x0A>", "<s>"; byte-level "ĠHello"), "" when id is out of range.
func (t *Tokenizer) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// IsSpecial reports whether id is a control or special added token (BOS, EOS, <|end_of_turn|>).
func (t *Tokenizer) IsSpecial(id int) bool {
	if id < 0 || id >= len(t.pieces) {
		return false
	}
	if t.kinds[id] == kindControl {
		return true
	}
	for _, a := range t.added {
		if a.id == id {
			return a.special
		}
	}
	return false
}

// InvalidUTF8At is the offset of the first byte of b that does not start
// a valid UTF-8 sequence, or -1 where b is valid UTF-8: the place an error
// about a text file that ErrInvalidUTF8 refuses names.
func InvalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// Encode tokenizes plain text: no BOS, added and special tokens are not
// recognised ("<|end_of_turn|>" is spelled with ordinary pieces). Text that
// is not valid UTF-8 is an error wrapping ErrInvalidUTF8.
func (t *Tokenizer) Encode(text string) ([]int, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("tokenizer: encode: %w", ErrInvalidUTF8)
	}
	return t.encodeSegment(nil, text, true, newChunkCache(len(text))), nil
}

// EncodeSpecial tokenizes text with added tokens recognised
// ("<|end_of_turn|>" becomes 32000 for openchat), without BOS.
func (t *Tokenizer) EncodeSpecial(text string) ([]int, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("tokenizer: encode: %w", ErrInvalidUTF8)
	}
	return t.encodeSegments(nil, []segment{{text: text, template: true}}), nil
}

// EncodePrompt is Encode with BOS in front when AddBOS and EOS after when AddEOS.
func (t *Tokenizer) EncodePrompt(text string) ([]int, error) {
	ids, err := t.Encode(text)
	if err != nil {
		return nil, err
	}
	return t.wrap(ids), nil
}

// EncodeSpecialPrompt is EncodeSpecial with BOS in front when AddBOS and
// EOS after when AddEOS: what a Hugging Face tokenizer gives for text with
// add_special_tokens (and vLLM for a completion's prompt), added tokens
// such as "<|end_of_turn|>" recognised.
func (t *Tokenizer) EncodeSpecialPrompt(text string) ([]int, error) {
	ids, err := t.EncodeSpecial(text)
	if err != nil {
		return nil, err
	}
	return t.wrap(ids), nil
}

// wrap puts BOS in front of ids when AddBOS and EOS after when AddEOS
// (the template's token after the text, where it names one).
func (t *Tokenizer) wrap(ids []int) []int {
	if t.addBOS && t.bos >= 0 {
		ids = append([]int{t.bos}, ids...)
	}
	eos := t.eos
	if t.tmplEOS >= 0 {
		eos = t.tmplEOS
	}
	if t.addEOS && eos >= 0 {
		ids = append(ids, eos)
	}
	return ids
}

// segment is a piece of text to encode: template text, where added tokens
// are matched, or message content, where they are not.
type segment struct {
	text     string
	template bool
}

// encodeSegments splits template segments on added tokens and encodes every
// maximal run of other text (spanning segments) as one piece of text, the
// way HF tokenizes a rendered string.
func (t *Tokenizer) encodeSegments(dst []int, segs []segment) []int {
	var run strings.Builder
	atStart := true // no added token emitted yet: the run starts the input
	cache := newChunkCache(0)
	flush := func() {
		if run.Len() > 0 {
			dst = t.encodeSegment(dst, run.String(), atStart, cache)
			run.Reset()
		}
	}
	for _, s := range segs {
		if !s.template {
			run.WriteString(s.text)
			continue
		}
		text := s.text
		for len(text) > 0 {
			a, start, end, ok := t.findAdded(text)
			if !ok {
				run.WriteString(text)
				break
			}
			pre := text[:start]
			if a.lstrip {
				pre = strings.TrimRight(pre, " \t\n\r\v\f")
			}
			run.WriteString(pre)
			flush()
			dst = append(dst, a.id)
			atStart = false
			text = text[end:]
			if a.rstrip {
				text = strings.TrimLeft(text, " \t\n\r\v\f")
			}
		}
	}
	flush()
	return dst
}

// findAdded finds the leftmost added token in text (longest on ties).
func (t *Tokenizer) findAdded(text string) (addedToken, int, int, bool) {
	best, bestStart := -1, len(text)+1
	for i, a := range t.added {
		off := 0
		for {
			j := strings.Index(text[off:], a.content)
			if j < 0 {
				break
			}
			j += off
			if j >= bestStart {
				break
			}
			if a.single && !wordBoundary(text, j, j+len(a.content)) {
				off = j + 1
				continue
			}
			best, bestStart = i, j
			break
		}
	}
	if best < 0 {
		return addedToken{}, 0, 0, false
	}
	a := t.added[best]
	return a, bestStart, bestStart + len(a.content), true
}

func wordBoundary(s string, i, j int) bool {
	isWord := func(r rune) bool {
		return r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 127
	}
	if i > 0 {
		r, _ := utf8.DecodeLastRuneInString(s[:i])
		if isWord(r) {
			return false
		}
	}
	if j < len(s) {
		r, _ := utf8.DecodeRuneInString(s[j:])
		if isWord(r) {
			return false
		}
	}
	return true
}
