package tokenizer

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The split patterns of Llama 3 and Qwen2 (their tokenizer.json).
const (
	testLlama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	testQwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// GPT-4o's o200k split, which Phi-4-mini's tokenizer.json runs
	// (llama.cpp's pre-tokenizer gpt-4o).
	testGPT4oPattern = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// tinyByteLevel is a hand-made byte-level tokenizer.json: ids 0..255 the
// bytes (in byte order), then the pieces of merges, in merge order, then
// extra pieces that no merge builds; pre-tokenizer a Split of pattern
// then ByteLevel (the GPT-2 ByteLevel alone when pattern is "").
type tinyByteLevel struct {
	pattern      string
	merges       []string // "a b", in the byte spelling
	extra        []string
	ignoreMerges bool
	normalizer   string // JSON
	post         string // JSON
	added        string // JSON list
}

func (c tinyByteLevel) json(t testing.TB) string {
	t.Helper()
	vocab := map[string]int{}
	for b := range 256 {
		vocab[byteText[b]] = b
	}
	for _, m := range c.merges {
		p := strings.Replace(m, " ", "", 1)
		if _, ok := vocab[p]; !ok {
			vocab[p] = len(vocab)
		}
	}
	for _, p := range c.extra {
		vocab[p] = len(vocab)
	}
	pre := `{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}`
	if c.pattern != "" {
		pat, _ := json.Marshal(c.pattern)
		pre = `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":` + string(pat) + `},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}`
	}
	v, _ := json.Marshal(vocab)
	m, _ := json.Marshal(c.merges)
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	im, _ := json.Marshal(c.ignoreMerges)
	return `{"added_tokens":` + or(c.added, "[]") + `,"normalizer":` + or(c.normalizer, "null") + `,"pre_tokenizer":` + pre +
		`,"post_processor":` + or(c.post, "null") + `,"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","ignore_merges":` + string(im) +
		`,"vocab":` + string(v) + `,"merges":` + string(m) + `}}`
}

func (c tinyByteLevel) load(t *testing.T) *Tokenizer {
	t.Helper()
	tok, err := parseJSON([]byte(c.json(t)))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pieceIDs maps byte-spelt pieces to their ids.
func pieceIDs(t *testing.T, tok *Tokenizer, pieces ...string) []int {
	t.Helper()
	ids := make([]int, len(pieces))
	for i, p := range pieces {
		id, ok := tok.TokenID(p)
		if !ok {
			t.Fatalf("no piece %q", p)
		}
		ids[i] = id
	}
	return ids
}

// TestByteLevelLlama3VsQwen2 checks, on a hand-made vocabulary, the two
// things that set Llama 3's tokenizer apart from Qwen2's: digits are
// split in groups of up to three (\p{N}{1,3}, Qwen2 one by one), and
// ignore_merges takes a pre-token that is a piece whole.
func TestByteLevelLlama3VsQwen2(t *testing.T) {
	// Merges: "1 2" → "12", "12 3" → "123", "b c" before "a b"; "abc" is a
	// piece no merge builds.
	base := tinyByteLevel{merges: []string{"1 2", "12 3", "b c", "a b"}, extra: []string{"abc"}}
	llama3, qwen2 := base, base
	llama3.pattern, llama3.ignoreMerges = testLlama3Pattern, true
	qwen2.pattern = testQwen2Pattern
	l3, q2 := llama3.load(t), qwen2.load(t)
	tests := []struct {
		text        string
		tok         *Tokenizer
		wantPieces  []string
		explanation string
	}{
		{"12345", l3, []string{"123", "4", "5"}, "pre-tokens 123 and 45; 4 5 has no merge"},
		{"12345", q2, []string{"1", "2", "3", "4", "5"}, "one pre-token per digit"},
		{"abc", l3, []string{"abc"}, "ignore_merges: the pre-token is a piece"},
		{"abc", q2, []string{"a", "bc"}, "BPE: b c (rank 2) first, then no a bc merge"},
		{"xabc", l3, []string{"x", "a", "bc"}, "xabc is no piece: BPE"},
		{"a 12", l3, []string{"a", "Ġ", "12"}, "space is its own pre-token before a digit"},
	}
	for _, tc := range tests {
		got, err := tc.tok.Encode(tc.text)
		if err != nil {
			t.Fatal(err)
		}
		if want := pieceIDs(t, tc.tok, tc.wantPieces...); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v (%s): %s", tc.text, got, want, tc.wantPieces, tc.explanation)
		}
		if dec, _ := tc.tok.Decode(got); dec != tc.text {
			t.Errorf("Decode(Encode(%q)) = %q", tc.text, dec)
		}
	}
}

// TestByteLevelNFC: with the NFC normalizer (Qwen2), decomposed text is
// composed before BPE, so it decodes composed.
func TestByteLevelNFC(t *testing.T) {
	c := tinyByteLevel{pattern: testQwen2Pattern, normalizer: `{"type":"NFC"}`, merges: []string{"Ã ©"}}
	tok := c.load(t)
	ids, err := tok.Encode("e\u0301")
	if err != nil {
		t.Fatal(err)
	}
	if want := pieceIDs(t, tok, "Ã©"); !slices.Equal(ids, want) {
		t.Errorf("Encode(e+U+0301) = %v, want %v (é, U+00E9 = C3 A9)", ids, want)
	}
	if dec, _ := tok.Decode(ids); dec != "é" {
		t.Errorf("Decode = %q, want é", dec)
	}
}

// TestByteLevelDecodeLossy: invalid UTF-8 decodes as Rust's
// String::from_utf8_lossy gives it (HF's ByteLevel decoder): one U+FFFD
// per maximal invalid subpart, hand-derived from Unicode §3.9.
func TestByteLevelDecodeLossy(t *testing.T) {
	tok := tinyByteLevel{}.load(t)
	const r = "\uFFFD"
	for _, tc := range []struct {
		bytes string
		want  string
	}{
		{"\xC3\xA9", "é"},
		{"\xE2\x82", r},                     // cut-off 3-byte sequence at the end: one U+FFFD
		{"\xE2\x82A", r + "A"},              // cut off by an ASCII byte
		{"\xF0\x9F\x98x", r + "x"},          // 3 bytes of a 4-byte sequence
		{"\xFF", r},                         // starts nothing
		{"\xC0\xAF", r + r},                 // C0 starts nothing, AF is a lone continuation
		{"\xED\xA0\x80", r + r + r},         // a surrogate: ED's second byte must be 80..9F
		{"\xE0\x80\x80", r + r + r},         // overlong: E0's second byte must be A0..BF
		{"\xF4\x90\x80\x80", r + r + r + r}, // above U+10FFFF
		{"a\x80\x80b", "a" + r + r + "b"},
	} {
		ids := make([]int, len(tc.bytes))
		for i := range len(tc.bytes) {
			ids[i] = int(tc.bytes[i])
		}
		got, err := tok.Decode(ids)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("Decode(% x) = %q, want %q", tc.bytes, got, tc.want)
		}
		checkStreaming(t, tok, ids)
	}
}

// TestByteLevelTemplate: the post_processor's template decides BOS and
// EOS (Llama 3 puts <|begin_of_text|> first; ByteLevel or null puts
// nothing), unless tokenizer_config.json sets add_bos_token or
// add_eos_token (transformers 5 then rebuilds the template from them).
func TestByteLevelTemplate(t *testing.T) {
	added := `[{"id":256,"content":"<|begin_of_text|>","special":true},{"id":257,"content":"<|end_of_text|>","special":true},{"id":258,"content":"<|eot|>","special":true}]`
	template := func(single string) string {
		return `{"type":"Sequence","processors":[{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true},` +
			`{"type":"TemplateProcessing","single":` + single + `,"pair":[],"special_tokens":{` +
			`"<|begin_of_text|>":{"id":"<|begin_of_text|>","ids":[256],"tokens":["<|begin_of_text|>"]},` +
			`"<|eot|>":{"id":"<|eot|>","ids":[258],"tokens":["<|eot|>"]}}}]}`
	}
	bos := `[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}]`
	bosEOS := `[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"<|eot|>","type_id":0}}]`
	for _, tc := range []struct {
		name, post, config string
		want               []int
		wantBOS            int
	}{
		{"llama 3", template(bos), `{"bos_token":"<|begin_of_text|>","eos_token":"<|end_of_text|>"}`, []int{256, 'h', 'i'}, 256},
		{"template over bos_token", template(bos), `{"bos_token":"<|end_of_text|>"}`, []int{256, 'h', 'i'}, 256},
		{"template with EOS", template(bosEOS), `{}`, []int{256, 'h', 'i', 258}, 256},
		{"add_bos_token false", template(bos), `{"bos_token":"<|begin_of_text|>","add_bos_token":false}`, []int{'h', 'i'}, 256},
		{"add_eos_token true", template(bos), `{"bos_token":"<|begin_of_text|>","eos_token":"<|end_of_text|>","add_eos_token":true}`, []int{'h', 'i', 257}, 256},
		{"add_bos_token true", `{"type":"ByteLevel"}`, `{"bos_token":"<|end_of_text|>","add_bos_token":true}`, []int{257, 'h', 'i'}, 257},
		{"qwen2", `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}`, `{"bos_token":null,"eos_token":"<|end_of_text|>"}`, []int{'h', 'i'}, -1},
		{"null", "null", `{}`, []int{'h', 'i'}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "tokenizer.json"), tinyByteLevel{added: added, post: tc.post}.json(t))
			writeFile(t, filepath.Join(dir, "tokenizer_config.json"), tc.config)
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tok.EncodePrompt("hi")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) || tok.BOS() != tc.wantBOS {
				t.Errorf("EncodePrompt(hi) = %v, BOS %d; want %v, BOS %d", got, tok.BOS(), tc.want, tc.wantBOS)
			}
			if tok.AddBOS() != (tc.want[0] == tc.wantBOS) {
				t.Errorf("AddBOS() = %v", tok.AddBOS())
			}
			// BOS renders as nothing, other special tokens as their text.
			dec, err := tok.Decode(got)
			if err != nil {
				t.Fatal(err)
			}
			want := "hi"
			if last := tc.want[len(tc.want)-1]; last >= 256 {
				want += tok.Piece(last)
			}
			if dec != want {
				t.Errorf("Decode(%v) = %q, want %q", got, dec, want)
			}
		})
	}
}

// TestByteLevelAccessors: pieces are the byte spelling, TokenBytes their
// bytes; added tokens have none.
func TestByteLevelAccessors(t *testing.T) {
	added := `[{"id":258,"content":"<|im_end|>","special":true},{"id":259,"content":"<x>","special":false}]`
	tok := tinyByteLevel{merges: []string{"Ġ h"}, added: added}.load(t)
	if !tok.ByteLevel() || tok.AddsSpacePrefix() {
		t.Errorf("ByteLevel() %v AddsSpacePrefix() %v, want true false", tok.ByteLevel(), tok.AddsSpacePrefix())
	}
	id, ok := tok.TokenID("Ġh")
	if !ok || id != 256 || tok.Piece(256) != "Ġh" || string(tok.TokenBytes(256)) != " h" {
		t.Errorf("Ġh: id %d %v, Piece %q, TokenBytes %q", id, ok, tok.Piece(256), tok.TokenBytes(256))
	}
	if got := tok.TokenBytes(0xE9); string(got) != "\xE9" {
		t.Errorf("TokenBytes(0xE9) = %q, want the byte E9", got)
	}
	for _, id := range []int{258, 259, -1, 260} {
		if got := tok.TokenBytes(id); got != nil {
			t.Errorf("TokenBytes(%d) = %q, want nil", id, got)
		}
	}
	ids, err := tok.EncodeSpecial(" h<|im_end|><x>")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []int{256, 258, 259}) || !tok.IsSpecial(258) || tok.IsSpecial(259) {
		t.Errorf("EncodeSpecial = %v, IsSpecial %v %v", ids, tok.IsSpecial(258), tok.IsSpecial(259))
	}
	if dec, _ := tok.Decode(ids); dec != " h<|im_end|><x>" {
		t.Errorf("Decode = %q", dec)
	}
	entries := tok.VocabEntries()
	if e := entries[256]; e.Piece != "Ġh" || e.Type != TokenTypeNormal || e.Score != 0 {
		t.Errorf("VocabEntries[256] = %+v, want Ġh normal score 0 (rank 0)", e)
	}
	if entries[258].Type != TokenTypeControl || entries[259].Type != TokenTypeUserDefined {
		t.Errorf("VocabEntries types %v %v, want control, user-defined", entries[258].Type, entries[259].Type)
	}
}

// TestByteLevelLoadErrors: what is not supported is refused naming the
// field (and the file, which LoadJSON and Load add).
func TestByteLevelLoadErrors(t *testing.T) {
	ok := tinyByteLevel{pattern: testQwen2Pattern}.json(t)
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(ok), &doc); err != nil {
		t.Fatal(err)
	}
	with := func(key, value string) string {
		d := map[string]json.RawMessage{}
		for k, v := range doc {
			d[k] = v
		}
		d[key] = json.RawMessage(value)
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	split := func(pattern string) string {
		p, _ := json.Marshal(pattern)
		return `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":` + string(p) + `},"behavior":"Isolated","invert":false},{"type":"ByteLevel","use_regex":false}]}`
	}
	var model map[string]json.RawMessage
	if err := json.Unmarshal(doc["model"], &model); err != nil {
		t.Fatal(err)
	}
	modelWith := func(key, value string) string {
		m := map[string]json.RawMessage{}
		for k, v := range model {
			m[k] = v
		}
		m[key] = json.RawMessage(value)
		b, _ := json.Marshal(m)
		return with("model", string(b))
	}
	for _, tc := range []struct {
		name, json, want string
	}{
		{"look-behind", with("pre_tokenizer", split(`(?<=a)b`)), `pre_tokenizer.pretokenizers[0].pattern.Regex "(?<=a)b": at offset 0: look-behind (?<= is not supported`},
		{"possessive", with("pre_tokenizer", split(`'(?i:[sdmt]|ll|ve|re)|\p{N}++`)), `pre_tokenizer.pretokenizers[0].pattern.Regex "'(?i:[sdmt]|ll|ve|re)|\\p{N}++"`},
		{"no pattern", with("pre_tokenizer", `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{},"behavior":"Isolated"},{"type":"ByteLevel"}]}`), "pre_tokenizer.pretokenizers[0].pattern {}"},
		{"bad behavior", with("pre_tokenizer", `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"String":"x"},"behavior":"Sideways"},{"type":"ByteLevel"}]}`), `pre_tokenizer.pretokenizers[0].behavior "Sideways"`},
		{"two ByteLevel", with("pre_tokenizer", `{"type":"Sequence","pretokenizers":[{"type":"ByteLevel"},{"type":"ByteLevel"}]}`), "pre_tokenizer.pretokenizers[1]: a second ByteLevel"},
		{"Metaspace and ByteLevel", with("pre_tokenizer", `{"type":"Sequence","pretokenizers":[{"type":"Metaspace"},{"type":"ByteLevel"}]}`), `pre_tokenizer.pretokenizers[0]: type "Metaspace" is not supported with ByteLevel`},
		{"normalizer", with("normalizer", `{"type":"NFKC"}`), `normalizer: type "NFKC" is not supported with ByteLevel`},
		{"legacy normalizer", with("normalizer", `{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"}]}`), `normalizer: type "Prepend"`},
		{"no decoder", with("decoder", `null`), "decoder: null with a ByteLevel pre_tokenizer"},
		{"other decoder", with("decoder", `{"type":"Metaspace"}`), `decoder: type "Metaspace"`},
		{"byte fallback", modelWith("byte_fallback", "true"), "model.byte_fallback"},
		{"roberta", with("post_processor", `{"type":"RobertaProcessing"}`), `post_processor: type "RobertaProcessing" is not supported`},
		{"two before", with("post_processor", `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"a"}},{"SpecialToken":{"id":"a"}},{"Sequence":{"id":"A"}}],"special_tokens":{"a":{"ids":[0]}}}`), "post_processor.single: want the sequence A with at most one special token before"},
		{"unknown special", with("post_processor", `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{}}`), `post_processor.single[0]: special token "<s>"`},
		{"special out of range", with("post_processor", `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{"<s>":{"ids":[99999]}}}`), `post_processor.special_tokens "<s>": id 99999`},
		{"sequence B", with("post_processor", `{"type":"TemplateProcessing","single":[{"Sequence":{"id":"B"}}]}`), `post_processor.single[0]: sequence "B"`},
		{"normalized added NFC", nfcAdded(t, with), `added_tokens[0] "é": normalized true with the NFC normalizer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "tokenizer.json"), tc.json)
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Join(dir, "tokenizer.json")) {
				t.Errorf("Load error %v, want one naming the file and containing %q", err, tc.want)
			}
		})
	}
	// ignore_merges belongs to byte-level tokenizers here.
	_, err := parseJSON([]byte(`{"model":{"type":"BPE","ignore_merges":true,"vocab":{"a":0},"merges":[]}}`))
	if err == nil || !strings.Contains(err.Error(), "model.ignore_merges") {
		t.Errorf("ignore_merges without ByteLevel: error %v", err)
	}
	if _, err := parseJSON([]byte(ok)); err != nil {
		t.Errorf("the base file: %v", err)
	}
}

// nfcAdded is the base file with the NFC normalizer and a normalized
// added token whose text NFC could change around.
func nfcAdded(t *testing.T, with func(key, value string) string) string {
	t.Helper()
	var d map[string]json.RawMessage
	if err := json.Unmarshal([]byte(with("normalizer", `{"type":"NFC"}`)), &d); err != nil {
		t.Fatal(err)
	}
	d["added_tokens"] = json.RawMessage(`[{"id":300,"content":"é","normalized":true}]`)
	b, _ := json.Marshal(d)
	return string(b)
}

// TestPreTokenizerSteps checks the Split behaviours, invert, String
// patterns, Digits, Punctuation and ByteLevel's prefix space against
// hand-derived pieces (HF tokenizers' NormalizedString::split semantics).
// A step after ByteLevel sees the byte spelling: Digits then splits at
// "²", the character byte B2 stands for (Falcon's pre-tokenizer does so).
func TestPreTokenizerSteps(t *testing.T) {
	for _, tc := range []struct {
		name, json, text string
		want             []string
	}{
		{"isolated", `{"type":"Split","pattern":{"String":" "},"behavior":"Isolated","invert":false}`, "a  b c", []string{"a", " ", " ", "b", " ", "c"}},
		{"removed", `{"type":"Split","pattern":{"String":" "},"behavior":"Removed","invert":false}`, "a  b c", []string{"a", "b", "c"}},
		{"contiguous", `{"type":"Split","pattern":{"String":" "},"behavior":"Contiguous","invert":false}`, "a  b c", []string{"a", "  ", "b", " ", "c"}},
		{"merged with previous", `{"type":"Split","pattern":{"String":" "},"behavior":"MergedWithPrevious","invert":false}`, "a  b c", []string{"a ", " ", "b ", "c"}},
		{"merged with next", `{"type":"Split","pattern":{"String":" "},"behavior":"MergedWithNext","invert":false}`, "a  b c", []string{"a", " ", " b", " c"}},
		{"leading match merged with previous", `{"type":"Split","pattern":{"String":" "},"behavior":"MergedWithPrevious","invert":false}`, " a", []string{" ", "a"}},
		{"invert removed", `{"type":"Split","pattern":{"Regex":"\\p{L}+"},"behavior":"Removed","invert":true}`, "ab, cd", []string{"ab", "cd"}},
		{"string is literal", `{"type":"Split","pattern":{"String":".+"},"behavior":"Isolated","invert":false}`, "a.+b", []string{"a", ".+", "b"}},
		{"digits", `{"type":"Digits","individual_digits":true}`, "a12٣b", []string{"a", "1", "2", "٣", "b"}},
		{"digits contiguous", `{"type":"Digits","individual_digits":false}`, "a12٣b", []string{"a", "12٣", "b"}},
		{"punctuation", `{"type":"Punctuation"}`, "hi!?$", []string{"hi", "!", "?", "$"}},
		{"punctuation contiguous", `{"type":"Punctuation","behavior":"Contiguous"}`, "hi!?$x«", []string{"hi", "!?$", "x", "«"}},
		{"prefix space", `{"type":"ByteLevel","add_prefix_space":true,"use_regex":false}`, "hi", []string{" hi"}},
		{"no prefix space twice", `{"type":"ByteLevel","add_prefix_space":true,"use_regex":false}`, " hi", []string{" hi"}},
		{"gpt-2 split", `{"type":"ByteLevel","add_prefix_space":false}`, "I'll go  now!\n", []string{"I", "'ll", " go", " ", " now", "!", "\n"}},
		{"gpt-4o split then ByteLevel", `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":` + jsonString(testGPT4oPattern) + `},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}`,
			"We'RE HTTPServer's 12345\n\n 東京😀/x", []string{"We'RE", " HTTPServer's", " ", "123", "45", "\n\n", " 東京", "😀/", "x"}},
		{"after ByteLevel", `{"type":"Sequence","pretokenizers":[{"type":"ByteLevel","add_prefix_space":false,"use_regex":false},{"type":"Digits","individual_digits":true}]}`, "x²", []string{"xÂ", "²"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c hfComponent
			if err := json.Unmarshal([]byte(tc.json), &c); err != nil {
				t.Fatal(err)
			}
			list := []hfComponent{c}
			if c.Type == "Sequence" {
				list = c.PreTokenizers
			}
			pt := &preTokenizer{}
			for _, s := range list {
				step, err := parsePreStep(s, "pre_tokenizer")
				if err != nil {
					t.Fatal(err)
				}
				pt.steps = append(pt.steps, step)
			}
			var got []string
			var sc preScratch
			pt.run(&sc, tc.text, 0, func(p string, mapped bool) {
				if !mapped {
					p = string(appendByteText(nil, p))
					p = string(appendPieceBytes(nil, p)) // back, to compare with the text
				}
				got = append(got, p)
			})
			if !slices.Equal(got, tc.want) {
				t.Errorf("%q: %q, want %q", tc.text, got, tc.want)
			}
		})
	}
}

// TestByteLevelChat: a Llama 3-style template on a byte-level tokenizer:
// "{{ bos_token }}" is the BOS id, <|eot_id|> an added token, message
// content encoded as text; decoding gives the rendering back without the
// BOS.
func TestByteLevelChat(t *testing.T) {
	tok, err := Load(filepath.Join("testdata", "bytelevel-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []Message{{Role: "user", Content: "Hello<|eot_id|>"}}
	rendered, err := tok.RenderChat(msgs, ChatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|eot_id|>"; rendered != want {
		t.Fatalf("RenderChat = %q, want %q", rendered, want)
	}
	ids, err := tok.EncodeChat(msgs, ChatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The content's "<|eot_id|>" is text, not the token.
	text, err := tok.Encode("<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>")
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]int{266}, text...), 267)
	if !slices.Equal(ids, want) {
		t.Errorf("EncodeChat = %v, want %v", ids, want)
	}
	if dec, _ := tok.Decode(ids); dec != strings.TrimPrefix(rendered, "<|begin_of_text|>") {
		t.Errorf("Decode(EncodeChat) = %q", dec)
	}
}

// TestByteLevelSpelling: GPT-2's bytes_to_unicode by hand: the space and
// newline are U+0120 and U+010A, the 33 bytes up to the space U+0100 on,
// DEL to NBSP (34) U+0121 on, the soft hyphen last, U+0143; the printable
// Latin-1 bytes themselves.
func TestByteLevelSpelling(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{" the", "\u0120the"},
		{"\n", "\u010a"},
		{"\x00", "\u0100"},
		{"\x7f\xa0", "\u0121\u0142"},
		{"\xad", "\u0143"},
		{"\xa1\xac\xae\xff", "\u00a1\u00ac\u00ae\u00ff"},
		{"é", "\u00c3\u00a9"},
		{"", ""},
	} {
		if got := ByteLevelSpelling(tc.in); got != tc.want {
			t.Errorf("ByteLevelSpelling(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// jsonString is s as a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
