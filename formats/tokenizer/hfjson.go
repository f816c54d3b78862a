package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// hfFile is the part of HF tokenizer.json that Llama/Mistral-family BPE
// tokenizers use.
type hfFile struct {
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         struct {
		Type                    string            `json:"type"`
		UnkToken                *string           `json:"unk_token"`
		ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
		FuseUnk                 bool              `json:"fuse_unk"`
		ByteFallback            bool              `json:"byte_fallback"`
		IgnoreMerges            bool              `json:"ignore_merges"`
		Vocab                   map[string]int    `json:"vocab"`
		Merges                  []json.RawMessage `json:"merges"`
	} `json:"model"`
}

type hfComponent struct {
	Type           string          `json:"type"`
	Normalizers    []hfComponent   `json:"normalizers"`
	PreTokenizers  []hfComponent   `json:"pretokenizers"`
	Prepend        string          `json:"prepend"`
	Pattern        json.RawMessage `json:"pattern"`
	Content        string          `json:"content"`
	Replacement    string          `json:"replacement"`
	PrependScheme  string          `json:"prepend_scheme"`
	AddPrefixSpace *bool           `json:"add_prefix_space"`
	Split          *bool           `json:"split"`
	// Split, Digits, ByteLevel (pre-tokenizers of byte-level BPE)
	Behavior         string `json:"behavior"`
	Invert           bool   `json:"invert"`
	UseRegex         *bool  `json:"use_regex"`
	IndividualDigits bool   `json:"individual_digits"`
}

// maxVocab bounds the vocabulary size accepted from files.
const maxVocab = 1 << 22

// LoadJSON reads an HF tokenizer.json with a BPE model (merges as "a b" or
// ["a","b"]) and added_tokens, of one of two kinds:
//
//   - SentencePiece-style: byte_fallback, the legacy normalizer (Prepend
//     "▁" then Replace " "→"▁") or the Metaspace pre-tokenizer; BOS is
//     added when the post_processor puts a special token first (the
//     default when it has none);
//   - byte-level (GPT-2, Llama 3, Qwen2): a ByteLevel pre_tokenizer, alone
//     or in a Sequence after Split (regex), Digits or Punctuation
//     pre-tokenizers, the ByteLevel decoder, normalizer null or NFC,
//     ignore_merges; the post_processor's TemplateProcessing (in a
//     Sequence with ByteLevel or not) says which token goes before and
//     after the text; ByteLevel or null adds none.
//
// tokenizer_config.json is read by Load, not here.
func LoadJSON(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := parseJSON(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	t.source = path
	return t, nil
}

func parseJSON(data []byte) (*Tokenizer, error) {
	var head struct {
		Model struct {
			Type string `json:"type"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, err
	}
	if head.Model.Type != "" && head.Model.Type != "BPE" {
		return nil, fmt.Errorf("model.type %q, want BPE", head.Model.Type)
	}
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	m := &f.Model
	if m.Type != "BPE" && !(m.Type == "" && m.Vocab != nil && m.Merges != nil) {
		return nil, fmt.Errorf("model.type %q, want BPE", m.Type)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, errors.New("model.continuing_subword_prefix is not supported")
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, errors.New("model.end_of_word_suffix is not supported")
	}
	if len(m.Vocab) == 0 {
		return nil, errors.New("model.vocab: empty")
	}
	n := 0
	for p, id := range m.Vocab {
		if id < 0 || id >= maxVocab {
			return nil, fmt.Errorf("model.vocab: %q has id %d, want 0..%d", p, id, maxVocab-1)
		}
		n = max(n, id+1)
	}
	t := newTokenizer(n)
	for i := range t.kinds {
		t.kinds[i] = kindUnused
	}
	for p, id := range m.Vocab {
		if t.kinds[id] != kindUnused {
			return nil, fmt.Errorf("model.vocab: id %d used by %q and %q", id, t.pieces[id], p)
		}
		if p == "" {
			return nil, fmt.Errorf("model.vocab: id %d: empty piece", id)
		}
		t.pieces[id] = p
		t.kinds[id] = kindNormal
		t.ids[p] = int32(id)
		if b, ok := parseBytePiece(p); ok && m.ByteFallback {
			t.kinds[id] = kindByte
			t.byteID[b] = int32(id)
		}
	}
	t.byteFallback = m.ByteFallback
	t.fuseUnk = m.FuseUnk
	if m.UnkToken != nil {
		id, ok := m.Vocab[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf("model.unk_token %q: not in model.vocab", *m.UnkToken)
		}
		t.unk = int32(id)
	}
	for rank, raw := range m.Merges {
		a, b, err := parseMerge(raw)
		if err != nil {
			return nil, fmt.Errorf("model.merges[%d]: %w", rank, err)
		}
		l, okL := m.Vocab[a]
		r, okR := m.Vocab[b]
		mid, okM := m.Vocab[a+b]
		if !okL || !okR || !okM {
			return nil, fmt.Errorf("model.merges[%d]: %q + %q: piece not in model.vocab", rank, a, b)
		}
		// As gguf-py's SpecialVocab spells a merge given as a pair: a
		// space in a part as U+0120, the byte-level space.
		t.mergeText = append(t.mergeText, strings.ReplaceAll(a, " ", "\u0120")+" "+strings.ReplaceAll(b, " ", "\u0120"))
		key := uint64(uint32(l))<<32 | uint64(uint32(r))
		if _, dup := t.merges[key]; !dup { // HF keeps the first rank
			t.merges[key] = merge{prio: -float64(rank), id: int32(mid)}
		}
	}
	byteLevel := isByteLevel(f.PreTokenizer)
	if byteLevel {
		if err := t.parseByteLevel(&f); err != nil {
			return nil, err
		}
	} else {
		if m.IgnoreMerges {
			return nil, errors.New("model.ignore_merges: supported with a ByteLevel pre_tokenizer only")
		}
		if err := t.parseNormalizer(f.Normalizer); err != nil {
			return nil, fmt.Errorf("normalizer: %w", err)
		}
		if err := t.parsePreTokenizer(f.PreTokenizer); err != nil {
			return nil, fmt.Errorf("pre_tokenizer: %w", err)
		}
	}
	for i, a := range f.AddedTokens {
		if err := t.addToken(addedToken{content: a.Content, id: a.ID, special: a.Special, lstrip: a.LStrip, rstrip: a.RStrip, single: a.SingleWord}); err != nil {
			return nil, fmt.Errorf("added_tokens[%d]: %w", i, err)
		}
		if byteLevel {
			if a.Normalized && t.nfc && !isASCII(a.Content) {
				// HF matches it in the NFC text, this tokenizer in the
				// text as given: they can differ.
				return nil, fmt.Errorf("added_tokens[%d] %q: normalized true with the NFC normalizer is supported for ASCII content only", i, a.Content)
			}
			continue
		}
		if a.Special && a.ID < n && m.Vocab[a.Content] == a.ID {
			t.kinds[a.ID] = kindControl // <s>, </s>: special pieces of the model vocab
			if int32(a.ID) == t.unk {
				t.kinds[a.ID] = kindAdded
			}
		}
	}
	if byteLevel {
		if err := t.parseTemplate(f.PostProcessor); err != nil {
			return nil, err
		}
		t.finish()
		return t, nil
	}
	t.mergeText = nil // kept for byte-level vocabularies only
	t.bos, t.eos = -1, -1
	if id, ok := t.TokenID("<s>"); ok {
		t.bos = id
	}
	if id, ok := t.TokenID("</s>"); ok {
		t.eos = id
	}
	t.addBOS = postProcessorAddsBOS(f.PostProcessor)
	t.finish()
	return t, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// parseByteLevel reads the parts of a byte-level tokenizer.json besides
// the model: normalizer (null or NFC), pre_tokenizer and decoder.
func (t *Tokenizer) parseByteLevel(f *hfFile) error {
	if f.Model.ByteFallback {
		return errors.New("model.byte_fallback: true with a ByteLevel pre_tokenizer is not supported")
	}
	t.prepend = prependNever
	t.ignoreMerges = f.Model.IgnoreMerges
	if !isNull(f.Normalizer) {
		var c hfComponent
		if err := json.Unmarshal(f.Normalizer, &c); err != nil {
			return fmt.Errorf("normalizer: %w", err)
		}
		list := []hfComponent{c}
		if c.Type == "Sequence" {
			list = c.Normalizers
		}
		for _, n := range list {
			if n.Type != "NFC" {
				return fmt.Errorf("normalizer: type %q is not supported with ByteLevel (want NFC or null)", n.Type)
			}
			t.nfc = true
		}
	}
	pt, err := parseByteLevelPreTokenizer(f.PreTokenizer)
	if err != nil {
		return err
	}
	t.pre = pt
	var dec hfComponent
	if isNull(f.Decoder) {
		return errors.New("decoder: null with a ByteLevel pre_tokenizer: want ByteLevel")
	}
	if err := json.Unmarshal(f.Decoder, &dec); err != nil {
		return fmt.Errorf("decoder: %w", err)
	}
	if dec.Type != "ByteLevel" {
		return fmt.Errorf("decoder: type %q with a ByteLevel pre_tokenizer: want ByteLevel", dec.Type)
	}
	return nil
}

// templateStep is an item of TemplateProcessing's single template.
type templateStep struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

// parseTemplate reads a byte-level tokenizer's post_processor: null or
// ByteLevel add nothing; TemplateProcessing's single template (alone or
// in a Sequence with ByteLevel) puts at most one special token before the
// text (BOS, Llama 3's <|begin_of_text|>) and at most one after.
func (t *Tokenizer) parseTemplate(raw json.RawMessage) error {
	t.tmplBOS, t.tmplEOS = -1, -1
	if isNull(raw) {
		return nil
	}
	type processor struct {
		Type          string         `json:"type"`
		Processors    []processor    `json:"processors"`
		Single        []templateStep `json:"single"`
		SpecialTokens map[string]struct {
			IDs []int `json:"ids"`
		} `json:"special_tokens"`
	}
	var pp processor
	if err := json.Unmarshal(raw, &pp); err != nil {
		return fmt.Errorf("post_processor: %w", err)
	}
	list, field := []processor{pp}, "post_processor"
	if pp.Type == "Sequence" {
		list = pp.Processors
	}
	for i, p := range list {
		f := field
		if pp.Type == "Sequence" {
			f = fmt.Sprintf("post_processor.processors[%d]", i)
		}
		switch p.Type {
		case "ByteLevel":
			continue
		case "TemplateProcessing":
		default:
			return fmt.Errorf("%s: type %q is not supported with ByteLevel (want TemplateProcessing, ByteLevel or null)", f, p.Type)
		}
		var before, after []int
		seen := false
		for j, item := range p.Single {
			switch {
			case item.Sequence != nil:
				if item.Sequence.ID != "A" || seen {
					return fmt.Errorf("%s.single[%d]: sequence %q: want one sequence A", f, j, item.Sequence.ID)
				}
				seen = true
			case item.SpecialToken != nil:
				st, ok := p.SpecialTokens[item.SpecialToken.ID]
				if !ok || len(st.IDs) != 1 {
					return fmt.Errorf("%s.single[%d]: special token %q: want one id in special_tokens", f, j, item.SpecialToken.ID)
				}
				if id := st.IDs[0]; id < 0 || id >= len(t.pieces) || t.kinds[id] == kindUnused {
					return fmt.Errorf("%s.special_tokens %q: id %d is not in the vocabulary", f, item.SpecialToken.ID, id)
				}
				if seen {
					after = append(after, st.IDs[0])
				} else {
					before = append(before, st.IDs[0])
				}
			default:
				return fmt.Errorf("%s.single[%d]: want SpecialToken or Sequence", f, j)
			}
		}
		if !seen || len(before) > 1 || len(after) > 1 {
			return fmt.Errorf("%s.single: want the sequence A with at most one special token before and one after", f)
		}
		if len(before) == 1 {
			t.tmplBOS = before[0]
		}
		if len(after) == 1 {
			t.tmplEOS = after[0]
		}
	}
	t.bos, t.eos = t.tmplBOS, -1
	t.addBOS, t.addEOS = t.tmplBOS >= 0, t.tmplEOS >= 0
	t.bosDecided, t.eosDecided = t.addBOS, t.addEOS
	return nil
}

func parseMerge(raw json.RawMessage) (string, string, error) {
	var s string
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		s = string(raw[1 : len(raw)-1]) // fast path: a string without escapes
		a, b, ok := strings.Cut(s, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") || !utf8.ValidString(s) {
			return "", "", fmt.Errorf("%q: want \"a b\"", s)
		}
		return a, b, nil
	}
	if err := json.Unmarshal(raw, &s); err == nil {
		a, b, ok := strings.Cut(s, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return "", "", fmt.Errorf("%q: want \"a b\"", s)
		}
		return a, b, nil
	}
	var pair []string
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 || pair[0] == "" || pair[1] == "" {
		return "", "", fmt.Errorf("%s: want \"a b\" or [\"a\",\"b\"]", raw)
	}
	return pair[0], pair[1], nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// parseNormalizer accepts the legacy Llama normalizer (Sequence of Prepend
// "▁" and Replace " "→"▁") or none.
func (t *Tokenizer) parseNormalizer(raw json.RawMessage) error {
	t.prepend = prependNever
	if isNull(raw) {
		return nil
	}
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	list := []hfComponent{c}
	if c.Type == "Sequence" {
		list = c.Normalizers
	}
	for i, n := range list {
		switch n.Type {
		case "Prepend":
			if n.Prepend != spaceSym || i != 0 {
				return fmt.Errorf("Prepend %q at position %d: only a leading Prepend %q is supported", n.Prepend, i, spaceSym)
			}
			t.prepend = prependAlways
		case "Replace":
			var pat struct {
				String *string `json:"String"`
			}
			if err := json.Unmarshal(n.Pattern, &pat); err != nil || pat.String == nil || *pat.String != " " || n.Content != spaceSym {
				return fmt.Errorf("Replace %s → %q: only Replace \" \" → %q is supported", n.Pattern, n.Content, spaceSym)
			}
			t.escapeWS = true
		default:
			return fmt.Errorf("type %q is not supported (want Prepend, Replace)", n.Type)
		}
	}
	return nil
}

// parsePreTokenizer accepts none or Metaspace (replacement "▁",
// prepend_scheme always/first/never or the older add_prefix_space, split).
func (t *Tokenizer) parsePreTokenizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	if c.Type == "Sequence" && len(c.PreTokenizers) == 1 {
		c = c.PreTokenizers[0]
	}
	if c.Type != "Metaspace" {
		return fmt.Errorf("type %q is not supported (want Metaspace or null)", c.Type)
	}
	if c.Replacement != "" && c.Replacement != spaceSym {
		return fmt.Errorf("Metaspace replacement %q, want %q", c.Replacement, spaceSym)
	}
	if t.prepend != prependNever || t.escapeWS {
		return errors.New("Metaspace together with a Prepend/Replace normalizer is not supported")
	}
	t.escapeWS = true
	switch c.PrependScheme {
	case "always":
		t.prepend = prependAlways
	case "first":
		t.prepend = prependFirst
	case "never":
		t.prepend = prependNever
	case "":
		t.prepend = prependAlways
		if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
			t.prepend = prependNever
		}
	default:
		return fmt.Errorf("Metaspace prepend_scheme %q, want always, first or never", c.PrependScheme)
	}
	t.splitMeta = c.Split == nil || *c.Split
	return nil
}

// postProcessorAddsBOS reports whether a TemplateProcessing post-processor
// starts its single template with a special token; true without one.
func postProcessorAddsBOS(raw json.RawMessage) bool {
	if isNull(raw) {
		return true
	}
	var pp struct {
		Type   string            `json:"type"`
		Single []json.RawMessage `json:"single"`
	}
	if json.Unmarshal(raw, &pp) != nil || pp.Type != "TemplateProcessing" {
		return true
	}
	if len(pp.Single) == 0 {
		return false
	}
	var first map[string]json.RawMessage
	if json.Unmarshal(pp.Single[0], &first) != nil {
		return true
	}
	_, ok := first["SpecialToken"]
	return ok
}
