package calibrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// loadTokenizer loads the openchat-3.5-1210 tokenizer of openchat-tiny.
func loadTokenizer(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	need(t, openchatTiny+"/tokenizer.json")
	tok, err := tokenizer.Load(openchatTiny)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestChatRendering checks the default rendering of an instruction row
// against the ids openchat's model card asserts for
// "<s>GPT4 Correct User: Hello<|end_of_turn|>GPT4 Correct Assistant: Hi<|end_of_turn|>"
// (fixtures/tokenizers/openchat-3.5-1210/expected_chat_ids.json, first 19 ids).
func TestChatRendering(t *testing.T) {
	tok := loadTokenizer(t)
	want := []int{1, 420, 6316, 28781, 3198, 3123, 1247, 28747, 22557, 32000, 420, 6316, 28781, 3198, 3123, 21631, 28747, 15359, 32000}
	tests := []struct{ name, file, body string }{
		{"instruction/output", "a.json", `[{"instruction": "Hello", "input": "", "output": "Hi"}]`},
		{"instruction/response", "b.jsonl", `{"instruction": "Hello", "response": "Hi", "source": "x"}`},
		{"sharegpt", "c.jsonl", `{"conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi"}]}`},
		{"messages", "d.jsonl", `{"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := Load(Options{Paths: []string{writeFile(t, tc.file, tc.body)}, Tokenizer: tok,
				Mode: ModeRecord, NSamples: 1, SeqLen: 24, MaxPositions: 4096})
			if err != nil {
				t.Fatal(err)
			}
			s := ds.Samples[0]
			if !slices.Equal(s.IDs[:len(want)], want) {
				t.Errorf("ids = %v, want %v", s.IDs[:len(want)], want)
			}
			for i, m := range s.Mask {
				if m != (i < len(want)) {
					t.Fatalf("mask = %v, want %d real tokens then padding", s.Mask, len(want))
				}
			}
			if s.IDs[len(s.IDs)-1] != tok.EOS() {
				t.Errorf("padding id = %d, want EOS %d", s.IDs[len(s.IDs)-1], tok.EOS())
			}
			if ds.Stats.Padded != 1 || ds.Stats.Truncated != 0 || ds.Stats.Tokens != len(want) {
				t.Errorf("stats = %+v", ds.Stats)
			}
		})
	}
}

func TestInstructionInputJoin(t *testing.T) {
	tok := loadTokenizer(t)
	ds, err := Load(Options{Paths: []string{writeFile(t, "a.json", `[{"instruction": "Translate", "input": "chat", "output": "cat"}]`)},
		Tokenizer: tok, Mode: ModeRecord, NSamples: 1, SeqLen: 64})
	if err != nil {
		t.Fatal(err)
	}
	want, err := tok.EncodeChat([]tokenizer.Message{{Role: "user", Content: "Translate\nchat"}, {Role: "assistant", Content: "cat"}}, tokenizer.ChatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ds.Samples[0].IDs[:len(want)]; !slices.Equal(got, want) {
		t.Errorf("ids = %v, want %v", got, want)
	}
}

// TestParquetJSONSameSamples: the fixture's parquet and JSON hold the same
// rows, so they give the same samples; the windows are those of the
// reference calibration (reference.json "calibration": 128 × 1024, seed 0).
func TestParquetJSONSameSamples(t *testing.T) {
	tok := loadTokenizer(t)
	need(t, alpacaJSON, alpacaPQ)
	load := func(path string, mode string) *Dataset {
		t.Helper()
		var log bytes.Buffer
		ds, err := Load(Options{Paths: []string{path}, Tokenizer: tok, NSamples: 128, SeqLen: 1024, MaxPositions: 4096, Mode: mode, Log: &log})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log.String(), "read 999 records") || !strings.Contains(log.String(), "128 samples × 1024 tokens") {
			t.Errorf("summary = %q", log.String())
		}
		return ds
	}
	for _, mode := range []string{ModeRandom, ModeRecord} {
		t.Run(mode, func(t *testing.T) {
			fromJSON, fromPQ := load(alpacaJSON, mode), load(alpacaPQ, mode)
			if !reflect.DeepEqual(fromJSON.Samples, fromPQ.Samples) {
				t.Fatal("parquet and JSON samples differ")
			}
			if fromPQ.Stats.Samples != 128 || len(fromPQ.Samples) != 128 || fromPQ.Stats.Records != 999 {
				t.Fatalf("stats = %+v", fromPQ.Stats)
			}
			for i, s := range fromPQ.Samples {
				if len(s.IDs) != 1024 || (s.Mask != nil && len(s.Mask) != 1024) {
					t.Fatalf("sample %d: %d ids, %d mask", i, len(s.IDs), len(s.Mask))
				}
			}
			if again := load(alpacaPQ, mode); !reflect.DeepEqual(again.Samples, fromPQ.Samples) {
				t.Fatal("a second load gives other samples")
			}
		})
	}
}

// TestRandomWindows rebuilds the token stream independently (EncodeChat per
// record, concatenated) and checks each window against the stream at the
// offsets Python's random.seed(0); randint(...) draws.
func TestRandomWindows(t *testing.T) {
	tok := loadTokenizer(t)
	need(t, alpacaJSON)
	recs, err := ReadRecords([]string{alpacaJSON}, "")
	if err != nil {
		t.Fatal(err)
	}
	var stream []int
	for _, r := range recs {
		user := r.Fields["instruction"].(string)
		if in := r.Fields["input"].(string); in != "" {
			user += "\n" + in
		}
		ids, err := tok.EncodeChat([]tokenizer.Message{{Role: "user", Content: user}, {Role: "assistant", Content: r.Fields["output"].(string)}}, tokenizer.ChatOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ids[0] != tok.BOS() {
			t.Fatalf("record %d: no BOS", r.Index)
		}
		stream = append(stream, ids...)
	}
	for _, seed := range []int64{0, 1234} {
		ds, err := Load(Options{Paths: []string{alpacaJSON}, Tokenizer: tok, NSamples: 16, SeqLen: 512, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if ds.Stats.Tokens != len(stream) {
			t.Fatalf("tokens = %d, want %d", ds.Stats.Tokens, len(stream))
		}
		starts := WindowStarts(len(stream), 16, 512, seed)
		for i, s := range ds.Samples {
			if !slices.Equal(s.IDs, stream[starts[i]:starts[i]+512]) || s.Mask != nil {
				t.Fatalf("seed %d sample %d is not stream[%d:+512]", seed, i, starts[i])
			}
		}
	}
}

func TestWikiText(t *testing.T) {
	tok := loadTokenizer(t)
	need(t, wikiRaw)
	ds, err := Load(Options{Paths: []string{wikiRaw}, Tokenizer: tok, NSamples: 8, SeqLen: 2048, MaxPositions: 4096})
	if err != nil {
		t.Fatal(err)
	}
	// wiki.test.raw is 328,879 SentencePiece tokens (fixture
	// wiki.test.raw.mistral-v0.1-spm-ids.u16le.bin), plus one BOS.
	if ds.Stats.Tokens != 328879+1 || ds.Stats.Records != 1 || ds.Rendering != "column text" {
		t.Errorf("stats = %+v, rendering %q", ds.Stats, ds.Rendering)
	}
}

// TestRecordModeByteLevel: a byte-level tokenizer without BOS or EOS
// (Qwen2's kind has neither BOS nor, without tokenizer_config.json, EOS):
// samples start with the text, padding is id 0, never -1.
func TestRecordModeByteLevel(t *testing.T) {
	vocab := map[string]int{}
	for b := range 256 {
		vocab[tokenizer.ByteLevelSpelling(string([]byte{byte(b)}))] = b
	}
	vj, err := json.Marshal(vocab)
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, "tokenizer.json", `{"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":`+string(vj)+`,"merges":[]}}`)
	tok, err := tokenizer.Load(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := Load(Options{Paths: []string{writeFile(t, "r.jsonl", `{"text": "hé"}`+"\n")}, Tokenizer: tok, Mode: ModeRecord, NSamples: 1, SeqLen: 5})
	if err != nil {
		t.Fatal(err)
	}
	s := ds.Samples[0]
	if want := []int{'h', 0xC3, 0xA9, 0, 0}; !slices.Equal(s.IDs, want) || !slices.Equal(s.Mask, []bool{true, true, true, false, false}) {
		t.Errorf("sample %v mask %v, want %v and the padding masked", s.IDs, s.Mask, want)
	}
}

func TestRecordModeTruncates(t *testing.T) {
	tok := loadTokenizer(t)
	body := `{"text": "one two three four five six seven eight nine ten"}` + "\n" + `{"text": "hi"}` + "\n" + `{"text": ""}` + "\n"
	var log bytes.Buffer
	ds, err := Load(Options{Paths: []string{writeFile(t, "r.jsonl", body)}, Tokenizer: tok, Mode: ModeRecord, NSamples: 4, SeqLen: 4, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	st := ds.Stats
	if st.Samples != 4 || !st.Repeated || st.Skipped != 1 || st.Truncated != 2 || st.Padded != 2 {
		t.Errorf("stats = %+v", st)
	}
	if !strings.Contains(log.String(), "warning") {
		t.Errorf("no warning logged: %q", log.String())
	}
	for _, s := range ds.Samples {
		if s.IDs[0] != tok.BOS() {
			t.Errorf("sample %v does not start with BOS", s.IDs)
		}
	}
}

func TestTooLittleData(t *testing.T) {
	tok := loadTokenizer(t)
	var log bytes.Buffer
	ds, err := Load(Options{Paths: []string{writeFile(t, "t.txt", "a short text")}, Tokenizer: tok, NSamples: 3, SeqLen: 16, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if !ds.Stats.Repeated || len(ds.Samples) != 3 || !strings.Contains(log.String(), "repeated") {
		t.Errorf("stats %+v, log %q", ds.Stats, log.String())
	}
	text, _ := tok.Encode("a short text")
	unit := append([]int{tok.BOS()}, text...)
	for _, s := range ds.Samples {
		for i, id := range s.IDs {
			if i > 0 && id == unit[0] && !slices.Equal(s.IDs[i:min(len(s.IDs), i+len(unit))], unit[:min(len(unit), len(s.IDs)-i)]) {
				t.Fatalf("sample %v is not a window of the repeated stream %v", s.IDs, unit)
			}
		}
	}
}

func TestTemplate(t *testing.T) {
	tok := loadTokenizer(t)
	path := writeFile(t, "q.jsonl", `{"q": "Why?", "a": "Because.", "meta": {"src": "web"}}`)
	ds, err := Load(Options{Paths: []string{path}, Tokenizer: tok, Mode: ModeRecord, NSamples: 1, SeqLen: 64,
		Template: `Q: {q}\nA: {a} ({meta.src}){missing?}<|end_of_turn|>`})
	if err != nil {
		t.Fatal(err)
	}
	body, err := tok.EncodeSpecial("Q: Why?\nA: Because. (web)<|end_of_turn|>")
	if err != nil {
		t.Fatal(err)
	}
	want := append([]int{tok.BOS()}, body...)
	if got := ds.Samples[0].IDs[:len(want)]; !slices.Equal(got, want) || !slices.Contains(want, 32000) {
		t.Errorf("ids = %v, want %v", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	tok := loadTokenizer(t)
	need(t, alpacaPQ)
	tests := []struct {
		name string
		opts Options
		want []string
		is   error
	}{
		{"missing text column", Options{Paths: []string{alpacaPQ}, TextColumn: "content"},
			[]string{`text column "content" not found`, "columns: input, instruction, output"}, nil},
		{"missing template column", Options{Paths: []string{alpacaPQ}, Template: "{question}"},
			[]string{`"question" not found`, "columns: input, instruction, output"}, nil},
		{"no text column", Options{Paths: []string{writeFile(t, "x.jsonl", `{"a": "1", "b": "2"}`)}},
			[]string{"no text", "columns: a, b"}, nil},
		{"empty json", Options{Paths: []string{writeFile(t, "e.json", `[]`)}}, []string{"e.json", "no records"}, ErrEmptyDataset},
		{"empty text", Options{Paths: []string{writeFile(t, "e.txt", ``)}}, []string{"e.txt"}, ErrEmptyDataset},
		{"only empty rows", Options{Paths: []string{writeFile(t, "n.jsonl", `{"text": null}`+"\n"+`{"text": ""}`)}}, []string{"no text: 2 records, none with text"}, ErrEmptyDataset},
		{"one empty row", Options{Paths: []string{writeFile(t, "o.jsonl", `{"text": " "}`)}}, []string{"no text: 1 record, "}, ErrEmptyDataset},
		{"seq-len beyond context", Options{Paths: []string{alpacaPQ}, SeqLen: 8192, MaxPositions: 4096},
			[]string{"seq-len 8192", "4096"}, nil},
		{"non-UTF-8", Options{Paths: []string{writeFile(t, "b.txt", "\xc3\x28")}}, []string{"b.txt", "invalid UTF-8"}, nil},
		{"hub name", Options{Paths: []string{"wikitext2"}}, []string{"Hub"}, ErrHubDataset},
		{"bad mode", Options{Paths: []string{alpacaPQ}, Mode: "windows"}, []string{`mode "windows"`}, nil},
		{"bad template", Options{Paths: []string{alpacaPQ}, Template: "{instruction"}, []string{"unclosed {"}, nil},
		{"struct column", Options{Paths: []string{writeFile(t, "s.jsonl", `{"meta": {"x": "y"}}`)}, TextColumn: "meta"},
			[]string{`s.jsonl: record 0 (0-based), line 1, column "meta": object with fields x, want a string`, "dotted path"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Tokenizer = tok
			_, err := Load(tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
		})
	}
}

func TestSeqLenDefault(t *testing.T) {
	for _, tc := range []struct{ maxPos, want int }{{0, 4096}, {2048, 2048}, {8192, 4096}} {
		o := Options{Tokenizer: &tokenizer.Tokenizer{}, MaxPositions: tc.maxPos}
		if err := resolve(&o); err != nil {
			t.Fatal(err)
		}
		if o.SeqLen != tc.want || o.NSamples != DefaultNSamples || o.Mode != ModeRandom {
			t.Errorf("max positions %d: seq-len %d nsamples %d mode %q, want seq-len %d", tc.maxPos, o.SeqLen, o.NSamples, o.Mode, tc.want)
		}
	}
}

// TestTextTypeErrors: a value that is not text in a column read as text is
// an error naming the file, the record, the column, what was found and
// what was wanted, whichever records the sampling would reach (record mode
// with one sample here).
func TestTextTypeErrors(t *testing.T) {
	tok := loadTokenizer(t)
	type intText struct {
		Text int64 `parquet:"text"`
	}
	type listInts struct {
		Text string  `parquet:"text"`
		Tags []int64 `parquet:"tags,list"`
	}
	type floatCol struct {
		Q     string  `parquet:"q"`
		Score float64 `parquet:"score,optional"`
	}
	type numTurn struct {
		From  string `parquet:"from"`
		Value int32  `parquet:"value"`
	}
	type numChat struct {
		Conversations []numTurn `parquet:"conversations,list"`
	}
	pq := func(name string, b []byte) string { return writeFile(t, name, string(b)) }
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"alpaca number instruction", Options{Paths: []string{writeFile(t, "alpaca.json",
			`[{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "output": "d"},
			  {"instruction": "e", "input": null, "output": "f"}, {"instruction": 123, "input": "", "output": "g"}]`)}},
			`alpaca.json: record 3 (0-based), column "instruction": number 123, want a string`},
		{"jsonl float text", Options{Paths: []string{writeFile(t, "t.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": 4.5}\n")}},
			`t.jsonl: record 1 (0-based), line 3, column "text": number 4.5, want a string`},
		{"boolean output", Options{Paths: []string{writeFile(t, "b.json", `[{"instruction": "a", "output": true}]`)}},
			`b.json: record 0 (0-based), column "output": boolean true, want a string`},
		{"number input", Options{Paths: []string{writeFile(t, "i.json", `[{"instruction": "a", "input": 7, "output": "b"}]`)}},
			`i.json: record 0 (0-based), column "input": number 7, want a string`},
		{"number system", Options{Paths: []string{writeFile(t, "s.json", `[{"instruction": "a", "output": "b", "system": 1}]`)}},
			`s.json: record 0 (0-based), column "system": number 1, want a string`},
		{"object text", Options{Paths: []string{writeFile(t, "o.jsonl", `{"text": {"a": 1, "b": "x"}}`)}},
			`o.jsonl: record 0 (0-based), line 1, column "text": object with fields a, b, want a string (address one field with a dotted path)`},
		{"array of numbers", Options{Paths: []string{writeFile(t, "a.jsonl", `{"text": ["one", 2]}`)}},
			`a.jsonl: record 0 (0-based), line 1, column "text": element 1: number 2, want a string`},
		{"chat content number", Options{Paths: []string{writeFile(t, "c.jsonl",
			`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 5}]}`)}},
			`c.jsonl: record 0 (0-based), line 1, column "messages": turn 1: content: number 5, want a string`},
		{"template number", Options{Paths: []string{writeFile(t, "q.jsonl", `{"q": "why", "n": 3}`)}, Template: "{q} {n}"},
			`q.jsonl: record 0 (0-based), line 1, template column "n": number 3, want a string`},
		{"late record in record mode", Options{Paths: []string{writeFile(t, "late.jsonl",
			"{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"}\n{\"text\": false}\n")}, Mode: ModeRecord, NSamples: 1},
			`late.jsonl: record 3 (0-based), line 4, column "text": boolean false, want a string`},
		{"parquet int text column", Options{Paths: []string{pq("int.parquet", parquetBytes(t, []intText{{1}, {2}}))}},
			`int.parquet: column "text": parquet INT64 (INT(64,true)), want a string (BYTE_ARRAY, STRING)`},
		{"parquet list of ints", Options{Paths: []string{pq("tags.parquet", parquetBytes(t, []listInts{{"x", []int64{1}}}))}, TextColumn: "tags"},
			`tags.parquet: column "tags": parquet INT64 (INT(64,true)), want a string (BYTE_ARRAY, STRING)`},
		{"parquet double in template", Options{Paths: []string{pq("f.parquet", parquetBytes(t, []floatCol{{"q", 0.5}}))}, Template: "{q}: {score}"},
			`f.parquet: column "score": parquet DOUBLE, want a string (BYTE_ARRAY, STRING)`},
		{"parquet number in chat turns", Options{Paths: []string{pq("chat.parquet", parquetBytes(t, []numChat{{[]numTurn{{"human", 7}}}}))}},
			`chat.parquet: record 0 (0-based), column "conversations": turn 0: content: number 7, want a string`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Tokenizer = tok
			tc.opts.SeqLen = 16
			_, err := Load(tc.opts)
			if err == nil {
				t.Fatalf("no error, want one ending %q", tc.want)
			}
			if got := err.Error(); !strings.HasSuffix(got, tc.want) {
				t.Errorf("error = %q, want one ending %q", got, tc.want)
			}
		})
	}
}

// TestOptionalColumns: null, missing and empty optional columns render as
// before, and columns not read as text may hold any type.
func TestOptionalColumns(t *testing.T) {
	tok := loadTokenizer(t)
	load := func(t *testing.T, name, body string) []Sample {
		t.Helper()
		ds, err := Load(Options{Paths: []string{writeFile(t, name, body)}, Tokenizer: tok, Mode: ModeRecord, NSamples: 2, SeqLen: 48})
		if err != nil {
			t.Fatal(err)
		}
		return ds.Samples
	}
	want := load(t, "want.json", `[{"instruction": "Hello", "input": "", "output": "Hi"}, {"instruction": "Translate", "input": "chat", "output": "cat"}]`)
	tests := []struct{ name, file, body string }{
		{"null input", "a.json", `[{"instruction": "Hello", "input": null, "output": "Hi"}, {"instruction": "Translate", "input": "chat", "output": "cat"}]`},
		{"missing input", "b.json", `[{"instruction": "Hello", "output": "Hi"}, {"instruction": "Translate", "input": "chat", "output": "cat"}]`},
		{"null system", "c.json", `[{"instruction": "Hello", "input": "", "output": "Hi", "system": null}, {"instruction": "Translate", "input": "chat", "output": "cat", "system": ""}]`},
		{"other columns any type", "d.jsonl", `{"instruction": "Hello", "output": "Hi", "id": 1, "score": 0.5, "ok": true, "meta": {"a": [1]}}` + "\n" +
			`{"instruction": "Translate", "input": "chat", "output": "cat", "id": null}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := load(t, tc.file, tc.body); !reflect.DeepEqual(got, want) {
				t.Errorf("samples = %v, want %v", got, want)
			}
		})
	}
}

// TestNoText: a dataset whose records are all empty or whitespace only is
// an error naming the file, not a calibration on whitespace; blank records
// among records with text are encoded as before.
func TestNoText(t *testing.T) {
	tok := loadTokenizer(t)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"whitespace text file", Options{Paths: []string{writeFile(t, "w.txt", " \n\t\r\n  \n")}}, "w.txt: no text"},
		{"whitespace records", Options{Paths: []string{writeFile(t, "w.jsonl", "{\"text\": \" \"}\n{\"text\": \"\\n\"}\n{\"text\": null}\n")}}, "w.jsonl: no text"},
		{"whitespace instructions", Options{Paths: []string{writeFile(t, "w.json", `[{"instruction": " ", "input": "", "output": "\t"}]`)}}, "w.json: no text"},
		{"whitespace turns", Options{Paths: []string{writeFile(t, "c.jsonl", `{"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": ""}]}`)}}, "c.jsonl: no text"},
		{"whitespace under a template", Options{Paths: []string{writeFile(t, "q.jsonl", `{"q": "  "}`)}, Template: "Question: {q}"}, "q.jsonl: no text"},
		{"record mode", Options{Paths: []string{writeFile(t, "r.txt", "\u00a0\n")}, Mode: ModeRecord}, "r.txt: no text"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Tokenizer = tok
			_, err := Load(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrEmptyDataset) {
				t.Fatalf("error = %v, want one containing %q wrapping ErrEmptyDataset", err, tc.want)
			}
		})
	}
	t.Run("blank records among text", func(t *testing.T) {
		ds, err := Load(Options{Paths: []string{writeFile(t, "m.jsonl", "{\"text\": \" \"}\n{\"text\": \"words\"}\n")}, Tokenizer: tok, Mode: ModeRecord, NSamples: 2, SeqLen: 8})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ds.Stats.Skipped, 0; got != want {
			t.Errorf("skipped = %d, want %d (a blank record is still encoded)", got, want)
		}
	})
	t.Run("blank file among files", func(t *testing.T) {
		dir := t.TempDir()
		for name, body := range map[string]string{"a.txt": "  \n", "b.txt": "some text"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Load(Options{Paths: []string{dir}, Tokenizer: tok, NSamples: 1, SeqLen: 4}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMixedLayouts: files read as one dataset whose records lack every
// column the chosen instruction rendering reads (a text file, or text rows,
// beside instruction rows) are an error naming the record and its columns,
// where they were dropped as records "without text".
func TestMixedLayouts(t *testing.T) {
	tok := loadTokenizer(t)
	instr := writeFile(t, "a.jsonl", `{"instruction": "Hello", "input": "", "output": "Hi"}`+"\n")
	tests := []struct {
		name  string
		other string
		want  string
	}{
		{"text rows", writeFile(t, "b.json", `[{"text": "plain prose"}]`), `b.json: record 0 (0-based): no column instruction, input or output (columns: text)`},
		{"text file", writeFile(t, "c.txt", "plain prose"), `c.txt: record 0 (0-based): no column instruction, input or output (columns: text)`},
		{"one record", writeFile(t, "d.jsonl", `{"instruction": "x", "output": "y"}`+"\n"+`{"prompt": "p", "body": "z"}`+"\n"), `d.jsonl: record 1 (0-based), line 2: no column instruction, input or output (columns: body, prompt)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(Options{Paths: []string{instr, tc.other}, Tokenizer: tok, NSamples: 1, SeqLen: 8})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("null columns still skipped", func(t *testing.T) {
		p := writeFile(t, "e.jsonl", `{"instruction": "x", "output": "y"}`+"\n"+`{"instruction": null, "output": null}`+"\n")
		ds, err := Load(Options{Paths: []string{p}, Tokenizer: tok, NSamples: 1, SeqLen: 8})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ds.Stats.Skipped, 1; got != want {
			t.Errorf("skipped = %d, want %d", got, want)
		}
	})
}
