package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// SentencePiece piece types (sentencepiece_model.proto, SentencePiece.Type).
const (
	spNormal      = 1
	spUnknown     = 2
	spControl     = 3
	spUserDefined = 4
	spUnused      = 5
	spByte        = 6
)

type spPiece struct {
	piece string
	score float32
	typ   int
}

type spModel struct {
	pieces []spPiece
	// trainer_spec
	modelType    int
	byteFallback bool
	unkID, bosID int
	eosID        int
	wsAsSuffix   bool
	// normalizer_spec
	normName      string
	charsmap      bool
	addDummy      bool
	removeExtraWS bool
	escapeWS      bool
}

// LoadSentencePiece reads a SentencePiece BPE model (tokenizer.model) and
// builds a tokenizer that merges by piece score, as SentencePiece does.
// Added tokens (added_tokens.json) and tokenizer_config.json are read by Load,
// not here; BOS is added by default (LlamaTokenizer's default).
func LoadSentencePiece(modelPath string) (*Tokenizer, error) {
	data, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := parseSentencePiece(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", modelPath, err)
	}
	t.source = modelPath
	return t, nil
}

// SentencePieceVocab returns the pieces of a SentencePiece model
// (tokenizer.model) in id order, each with the score and type the model
// stores (ModelProto.SentencePiece, whose type numbering TokenType shares),
// whatever its model type. A missing file gives an error wrapping
// fs.ErrNotExist.
func SentencePieceVocab(modelPath string) ([]VocabEntry, error) {
	data, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	m, err := parseModelProto(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", modelPath, err)
	}
	if len(m.pieces) == 0 {
		return nil, fmt.Errorf("tokenizer: %s: no pieces (not a sentencepiece model?)", modelPath)
	}
	out := make([]VocabEntry, len(m.pieces))
	for i, p := range m.pieces {
		out[i] = VocabEntry{Piece: p.piece, Score: p.score, Type: TokenType(p.typ)}
	}
	return out, nil
}

func parseSentencePiece(data []byte) (*Tokenizer, error) {
	m, err := parseModelProto(data)
	if err != nil {
		return nil, err
	}
	return m.build()
}

// parseModelProto reads the fields of a ModelProto that the tokenizer uses.
func parseModelProto(data []byte) (*spModel, error) {
	m := spModel{modelType: 1, unkID: 0, bosID: 1, eosID: 2, addDummy: true, removeExtraWS: true, escapeWS: true}
	err := walkFields(data, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			p, err := parsePiece(v)
			if err != nil {
				return fmt.Errorf("piece %d: %w", len(m.pieces), err)
			}
			m.pieces = append(m.pieces, p)
		case 2:
			return parseTrainerSpec(v, &m)
		case 3:
			return parseNormalizerSpec(v, &m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// walkFields calls fn for every field of a protobuf message; v holds the
// bytes of length-delimited fields, x the value of varint and fixed fields.
func walkFields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("corrupt protobuf: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var y uint32
			y, n = protowire.ConsumeFixed32(b)
			x = uint64(y)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("corrupt protobuf field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

func parsePiece(b []byte) (spPiece, error) {
	p := spPiece{typ: spNormal}
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return errors.New("piece is not valid utf-8")
			}
			p.piece = string(v)
		case num == 2 && typ == protowire.Fixed32Type:
			p.score = math.Float32frombits(uint32(x))
		case num == 3 && typ == protowire.VarintType:
			p.typ = int(x)
		}
		return nil
	})
	if err != nil {
		return p, err
	}
	if p.typ < spNormal || p.typ > spByte {
		return p, fmt.Errorf("piece %q: type %d, want 1..6", p.piece, p.typ)
	}
	return p, nil
}

func parseTrainerSpec(b []byte, m *spModel) error {
	return walkFields(b, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
		if typ != protowire.VarintType {
			return nil
		}
		switch num {
		case 3:
			m.modelType = int(x)
		case 24:
			m.wsAsSuffix = x != 0
		case 35:
			m.byteFallback = x != 0
		case 40:
			m.unkID = int(int32(x))
		case 41:
			m.bosID = int(int32(x))
		case 42:
			m.eosID = int(int32(x))
		}
		return nil
	})
}

func parseNormalizerSpec(b []byte, m *spModel) error {
	return walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			m.normName = string(v)
		case num == 2 && typ == protowire.BytesType:
			m.charsmap = len(v) > 0
		case num == 3 && typ == protowire.VarintType:
			m.addDummy = x != 0
		case num == 4 && typ == protowire.VarintType:
			m.removeExtraWS = x != 0
		case num == 5 && typ == protowire.VarintType:
			m.escapeWS = x != 0
		}
		return nil
	})
}

func (m *spModel) build() (*Tokenizer, error) {
	if len(m.pieces) == 0 {
		return nil, errors.New("no pieces (not a sentencepiece model?)")
	}
	if m.modelType != 2 {
		return nil, fmt.Errorf("trainer_spec.model_type %d, want 2 (BPE)", m.modelType)
	}
	if m.wsAsSuffix {
		return nil, errors.New("trainer_spec.treat_whitespace_as_suffix is not supported")
	}
	if m.charsmap && m.normName != "identity" {
		return nil, fmt.Errorf("normalizer_spec %q with a precompiled charsmap is not supported (want identity)", m.normName)
	}
	n := len(m.pieces)
	t := newTokenizer(n)
	t.byteFallback = m.byteFallback
	t.escapeWS = m.escapeWS
	t.collapseWS = m.removeExtraWS
	t.prepend = prependNever
	if m.addDummy {
		t.prepend = prependAlways
	}
	scores := make([]float64, n)
	seen := make(map[string]bool, n)
	for i, p := range m.pieces {
		if seen[p.piece] {
			return nil, fmt.Errorf("piece %d %q: duplicate", i, p.piece)
		}
		seen[p.piece] = true
		t.pieces[i] = p.piece
		scores[i] = float64(p.score)
		switch p.typ {
		case spNormal, spUserDefined, spUnused:
			t.kinds[i] = kindNormal
			if p.piece == "" {
				return nil, fmt.Errorf("piece %d: empty", i)
			}
			t.ids[p.piece] = int32(i)
		case spByte:
			b, ok := parseBytePiece(p.piece)
			if !ok {
				return nil, fmt.Errorf("piece %d %q: byte piece not of the form <0xNN>", i, p.piece)
			}
			t.kinds[i] = kindByte
			t.byteID[b] = int32(i)
		case spControl:
			t.kinds[i] = kindControl
			t.added = append(t.added, addedToken{content: p.piece, id: i, special: true})
		case spUnknown:
			t.kinds[i] = kindAdded
			t.unk = int32(i)
			t.added = append(t.added, addedToken{content: p.piece, id: i, special: true})
		}
		if p.typ == spUserDefined {
			// SentencePiece matches user-defined pieces as a whole before BPE.
			t.added = append(t.added, addedToken{content: p.piece, id: i})
		}
		if p.typ == spUnused {
			if t.revMerge == nil {
				t.revMerge = make(map[int32][2]int32)
			}
			t.revMerge[int32(i)] = [2]int32{}
		}
	}
	// Every normal piece of two or more characters is a merge of each of its
	// splits into two symbols, scored by the piece's score.
	for i, p := range m.pieces {
		if p.typ != spNormal && p.typ != spUserDefined && p.typ != spUnused {
			continue
		}
		for k := 0; k < len(p.piece); {
			_, sz := utf8.DecodeRuneInString(p.piece[k:])
			k += sz
			if k >= len(p.piece) {
				break
			}
			l := t.symbolID(p.piece[:k])
			r := t.symbolID(p.piece[k:])
			if l < 0 || r < 0 {
				continue
			}
			t.merges[uint64(uint32(l))<<32|uint64(uint32(r))] = merge{prio: scores[i], id: int32(i)}
		}
	}
	if m.unkID >= 0 && m.unkID < n {
		t.unk = int32(m.unkID)
	}
	t.bos, t.eos = -1, -1
	if m.bosID >= 0 && m.bosID < n {
		t.bos = m.bosID
	}
	if m.eosID >= 0 && m.eosID < n {
		t.eos = m.eosID
	}
	t.addBOS = true
	t.finish()
	return t, nil
}

// symbolID returns the id of a BPE symbol: a piece, or for a single
// character with no piece a pseudo id (so that pieces containing it can still
// be built, as SentencePiece allows); -1 for other strings.
func (t *Tokenizer) symbolID(s string) int32 {
	if id, ok := t.ids[s]; ok {
		return id
	}
	if utf8.RuneCountInString(s) != 1 {
		return -1
	}
	id := int32(pseudoBase + len(t.pseudo))
	t.pseudo = append(t.pseudo, s)
	t.ids[s] = id
	return id
}

func parseBytePiece(s string) (byte, bool) {
	if len(s) != 6 || !strings.HasPrefix(s, "<0x") || s[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range s[3:5] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = byte(c - '0')
		case c >= 'A' && c <= 'F':
			d = byte(c-'A') + 10
		case c >= 'a' && c <= 'f':
			d = byte(c-'a') + 10
		default:
			return 0, false
		}
		v = v<<4 | d
	}
	return v, true
}

func newTokenizer(n int) *Tokenizer {
	t := &Tokenizer{
		pieces:  make([]string, n),
		kinds:   make([]uint8, n),
		ids:     make(map[string]int32, n),
		merges:  make(map[uint64]merge, n*2),
		unk:     -1,
		bos:     -1,
		eos:     -1,
		pad:     -1,
		tmplBOS: -1,
		tmplEOS: -1,
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	return t
}

// finish computes derived state after the vocabulary and added tokens change.
func (t *Tokenizer) finish() {
	t.chunkSafe = true
	for p, id := range t.ids {
		if int(id) >= len(t.pieces) {
			continue
		}
		if i := strings.Index(p, spaceSym); i >= 0 {
			rest := strings.TrimLeft(p[i:], spaceSym)
			if strings.Contains(rest, spaceSym) {
				t.chunkSafe = false
				break
			}
		}
	}
	// Longest added token first, so that findAdded prefers it on ties.
	sortAdded(t.added)
	t.addedIDs = make(map[int32]bool, len(t.added))
	for _, a := range t.added {
		t.addedIDs[int32(a.id)] = true
	}
}

func sortAdded(a []addedToken) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && len(a[j].content) > len(a[j-1].content); j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// loadAddedTokensJSON reads added_tokens.json ({"<|end_of_turn|>": 32000});
// a missing file is not an error.
func (t *Tokenizer) loadAddedTokensJSON(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tokenizer: %w", err)
	}
	var m map[string]int
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	for content, id := range m {
		if err := t.addToken(addedToken{content: content, id: id, special: true}); err != nil {
			return fmt.Errorf("tokenizer: %s: %w", path, err)
		}
	}
	t.finish()
	return nil
}

// pseudoBase is the first pseudo id (see symbolID), above every real id.
const pseudoBase = 1 << 30

// maxAddedID bounds ids of added tokens so that a corrupt file cannot make
// the vocabulary huge.
const maxAddedID = 1 << 22

// addToken adds (or updates the flags of) an added token.
func (t *Tokenizer) addToken(a addedToken) error {
	if a.content == "" {
		return fmt.Errorf("added token %d: empty content", a.id)
	}
	if a.id < 0 || a.id >= maxAddedID {
		return fmt.Errorf("added token %q: id %d out of range", a.content, a.id)
	}
	for i := range t.added {
		if t.added[i].id == a.id {
			if t.added[i].content != a.content {
				return fmt.Errorf("added token %d: content %q, but the vocabulary has %q", a.id, a.content, t.added[i].content)
			}
			t.added[i] = a
			return nil
		}
	}
	if a.id < len(t.pieces) && t.kinds[a.id] != kindUnused {
		if t.pieces[a.id] != a.content {
			return fmt.Errorf("added token %q: id %d is already the piece %q", a.content, a.id, t.pieces[a.id])
		}
		if t.kinds[a.id] == kindNormal {
			t.kinds[a.id] = kindAdded
		}
		t.added = append(t.added, a)
		return nil
	}
	for len(t.pieces) <= a.id {
		t.pieces = append(t.pieces, "")
		t.kinds = append(t.kinds, kindUnused)
	}
	t.pieces[a.id] = a.content
	t.kinds[a.id] = kindAdded
	t.added = append(t.added, a)
	return nil
}
