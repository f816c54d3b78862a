package tokenizer

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

const fixtures = "../../../shared/fixtures"

var (
	openchatDir = filepath.Join(fixtures, "tokenizers", "openchat-3.5-1210")
	mistralDir  = filepath.Join(fixtures, "tokenizers", "mistral-7b-v0.1")
	storiesDir  = filepath.Join(fixtures, "models", "stories260K-hf-mistral")
	tinyDir     = filepath.Join(fixtures, "models", "openchat-tiny")
	wikiPath    = filepath.Join(fixtures, "datasets", "wikitext-2-raw", "wiki.test.raw")
	wikiIDsPath = filepath.Join(fixtures, "datasets", "wikitext-2-raw", "wiki.test.raw.mistral-v0.1-spm-ids.u16le.bin")
	chatIDsPath = filepath.Join(openchatDir, "expected_chat_ids.json")
	loaderNames = []string{"tokenizer.json", "tokenizer.model"}
)

func needFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("fixture %s missing: %v", path, err)
	}
}

// loadBoth loads dir's tokenizer through tokenizer.json and through
// tokenizer.model (+ added_tokens.json), each with the dir's configs.
func loadBoth(t testing.TB, dir string) map[string]*Tokenizer {
	t.Helper()
	loadedMu.Lock()
	defer loadedMu.Unlock()
	if m, ok := loaded[dir]; ok {
		return m
	}
	needFile(t, filepath.Join(dir, "tokenizer.json"))
	needFile(t, filepath.Join(dir, "tokenizer.model"))
	j, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	s, err := loadSentencePieceDir(dir)
	if err != nil {
		t.Fatalf("loadSentencePieceDir(%s): %v", dir, err)
	}
	m := map[string]*Tokenizer{"tokenizer.json": j, "tokenizer.model": s}
	loaded[dir] = m
	return m
}

// loaded caches tokenizers across tests; a Tokenizer is immutable.
var (
	loadedMu sync.Mutex
	loaded   = map[string]map[string]*Tokenizer{}
)

// loadSentencePieceDir runs Load on a copy of dir without tokenizer.json,
// the way the real openchat-3.5-1210 repository ships its tokenizer.
func loadSentencePieceDir(dir string) (*Tokenizer, error) {
	tmp, err := os.MkdirTemp("", "spmdir")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for _, name := range []string{"tokenizer.model", "added_tokens.json", "tokenizer_config.json", "special_tokens_map.json"} {
		src, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(src); err != nil {
			continue
		}
		// A link, or a copy where links cannot be made (Windows without
		// Developer Mode).
		if os.Symlink(src, filepath.Join(tmp, name)) != nil {
			b, err := os.ReadFile(src)
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
				return nil, err
			}
		}
	}
	return Load(tmp)
}

func readWiki(t testing.TB) (string, []int) {
	t.Helper()
	needFile(t, wikiPath)
	needFile(t, wikiIDsPath)
	text, err := os.ReadFile(wikiPath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(wikiIDsPath)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(raw)/2)
	for i := range ids {
		ids[i] = int(binary.LittleEndian.Uint16(raw[2*i:]))
	}
	return string(text), ids
}

func TestWikiTextCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("whole-corpus test skipped in -short mode")
	}
	text, want := readWiki(t)
	if len(want) != 328879 {
		t.Fatalf("%s: %d ids, want 328879", wikiIDsPath, len(want))
	}
	toks := loadBoth(t, openchatDir)
	for _, name := range loaderNames {
		tok := toks[name]
		t.Run(name, func(t *testing.T) {
			got, err := tok.Encode(text)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Errorf("Encode(wiki.test.raw): %d ids, want %d", len(got), len(want))
			}
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					lo, hi := max(0, i-5), min(len(got), len(want), i+5)
					t.Fatalf("id %d: got %v, want %v", i, got[lo:hi], want[lo:hi])
				}
			}
			dec, err := tok.Decode(got)
			if err != nil {
				t.Fatal(err)
			}
			if dec != text {
				t.Errorf("Decode(Encode(wiki.test.raw)) differs from the text (len %d vs %d)", len(dec), len(text))
			}
		})
	}
}

type chatVector struct {
	Messages            []Message        `json:"messages"`
	AddGenerationPrompt bool             `json:"add_generation_prompt"`
	Rendered            string           `json:"rendered"`
	InputIDs            []int            `json:"input_ids"`
	SPMSegments         map[string][]int `json:"spm_segments"`
	SingleTurn          struct {
		Text string `json:"text"`
		IDs  []int  `json:"input_ids_with_bos"`
	} `json:"single_turn_readme"`
	HelloWorld struct {
		Text string `json:"text"`
		IDs  []int  `json:"input_ids_with_bos"`
	} `json:"hello_world"`
}

func readChatVector(t *testing.T) chatVector {
	t.Helper()
	needFile(t, chatIDsPath)
	data, err := os.ReadFile(chatIDsPath)
	if err != nil {
		t.Fatal(err)
	}
	var v chatVector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", chatIDsPath, err)
	}
	if len(v.InputIDs) != 39 {
		t.Fatalf("%s: %d input_ids, want 39", chatIDsPath, len(v.InputIDs))
	}
	return v
}

func TestOpenchatExpectedChatIDs(t *testing.T) {
	v := readChatVector(t)
	for _, dir := range []string{openchatDir, tinyDir} {
		t.Run(filepath.Base(dir), func(t *testing.T) { testChatVector(t, v, dir) })
	}
}

func testChatVector(t *testing.T, v chatVector, dir string) {
	toks := loadBoth(t, dir)
	for _, name := range loaderNames {
		tok := toks[name]
		t.Run(name, func(t *testing.T) {
			opts := ChatOptions{AddGenerationPrompt: v.AddGenerationPrompt}
			rendered, err := tok.RenderChat(v.Messages, opts)
			if err != nil {
				t.Fatal(err)
			}
			if rendered != v.Rendered {
				t.Errorf("RenderChat = %q, want %q", rendered, v.Rendered)
			}
			got, err := tok.EncodeChat(v.Messages, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, v.InputIDs) {
				t.Errorf("EncodeChat = %v, want %v", got, v.InputIDs)
			}
			// The rendered string with specials recognised gives the same ids.
			got, err = tok.EncodeSpecial(v.Rendered)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, v.InputIDs) {
				t.Errorf("EncodeSpecial(rendered) = %v, want %v", got, v.InputIDs)
			}
			for text, want := range v.SPMSegments {
				got, err := tok.Encode(text)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("Encode(%q) = %v, want %v", text, got, want)
				}
			}
			got, err = tok.EncodeSpecial(v.SingleTurn.Text)
			if err != nil {
				t.Fatal(err)
			}
			if want := v.SingleTurn.IDs[1:]; !slices.Equal(got, want) {
				t.Errorf("EncodeSpecial(%q) = %v, want %v", v.SingleTurn.Text, got, want)
			}
			// The model card's tokenizer(text).input_ids: BOS, specials recognised.
			got, err = tok.EncodeSpecialPrompt(v.SingleTurn.Text)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, v.SingleTurn.IDs) {
				t.Errorf("EncodeSpecialPrompt(%q) = %v, want %v", v.SingleTurn.Text, got, v.SingleTurn.IDs)
			}
			got, err = tok.EncodePrompt(v.HelloWorld.Text)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, v.HelloWorld.IDs) {
				t.Errorf("EncodePrompt(%q) = %v, want %v", v.HelloWorld.Text, got, v.HelloWorld.IDs)
			}
		})
	}
}
