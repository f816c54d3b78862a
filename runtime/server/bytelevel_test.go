package server

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// byteLevelTokenizer is a made-up byte-level BPE vocabulary of n ids (the
// model's vocabulary size): the 256 bytes in GPT-2's spelling, then
// pieces of one to four random bytes, many of them parts of multi-byte
// characters, so that sampled tokens split characters; a chat template
// that joins the messages' contents.
func byteLevelTokenizer(t *testing.T, n int) *tokenizer.Tokenizer {
	t.Helper()
	spell := make([]string, 256)
	for b := range 256 {
		spell[b] = tokenizer.ByteLevelSpelling(string([]byte{byte(b)}))
	}
	vocab := map[string]int{}
	for b := range 256 {
		vocab[spell[b]] = b
	}
	r := rand.New(rand.NewPCG(5, 6))
	pool := []byte("abcdefgh ,.'\n\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80")
	for len(vocab) < n { // (24 bytes give 24+24²+24³+24⁴ pieces of one to four)
		var p string
		for range 1 + r.IntN(4) {
			p += spell[pool[r.IntN(len(pool))]]
		}
		if _, ok := vocab[p]; !ok {
			vocab[p] = len(vocab)
		}
	}
	vj, err := json.Marshal(vocab)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"tokenizer.json": `{"added_tokens":[],"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},"decoder":{"type":"ByteLevel"},` +
			`"model":{"type":"BPE","vocab":` + string(vj) + `,"merges":[]}}`,
		"tokenizer_config.json": `{"chat_template":"{% for m in messages %}{{ m['content'] }}{% endfor %}"}`,
	}
	for name, s := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestByteLevelServe serves a model with a byte-level vocabulary: sampled
// tokens cut characters, yet every streamed piece is valid UTF-8 and the
// stream spells the whole answer; the log-probabilities' bytes are the
// tokens' bytes, and the tokens they name decode to the answer; a stop
// string cuts the answer where it occurs.
func TestByteLevelServe(t *testing.T) {
	tok := byteLevelTokenizer(t, 32002)
	ts := startServer(t, serverConfig{Tokenizer: tok})
	const req = `"messages": [{"role": "user", "content": "hé 日"}], "max_tokens": 40, "temperature": 1.5, "seed": 7`
	code, data := post(t, ts, "/v1/chat/completions", `{`+req+`, "logprobs": true}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	c := decode(t, data)
	text := c.Choices[0].Message.Content
	if !utf8.ValidString(text) || text == "" {
		t.Fatalf("content %q", text)
	}
	var lp struct {
		Content []struct {
			Token string `json:"token"`
			Bytes []int  `json:"bytes"`
		} `json:"content"`
	}
	if err := json.Unmarshal(c.Choices[0].Logprobs, &lp); err != nil || len(lp.Content) == 0 {
		t.Fatalf("logprobs %s: %v", c.Choices[0].Logprobs, err)
	}
	var ids []int
	split := false
	for _, e := range lp.Content {
		var b []byte
		for _, v := range e.Bytes {
			b = append(b, byte(v))
		}
		id, ok := tok.TokenID(tokenizer.ByteLevelSpelling(string(b)))
		if !ok || string(tok.TokenBytes(id)) != string(b) {
			t.Fatalf("logprob bytes %v are no token's bytes", e.Bytes)
		}
		split = split || !utf8.Valid(b)
		ids = append(ids, id)
	}
	if !split {
		t.Error("no sampled token split a character: the test shows nothing")
	}
	if want, err := tok.Decode(ids); err != nil || want != text {
		t.Errorf("the log-probabilities' tokens decode to %q (%v), content %q", want, err, text)
	}
	// Streamed: the same answer (same seed), every piece valid UTF-8.
	code, data = post(t, ts, "/v1/chat/completions", `{`+req+`, "stream": true}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	texts, chunks := streamText(t, data, true)
	for _, ch := range chunks {
		for _, c := range ch.Choices {
			if c.Delta.Content != nil && !utf8.ValidString(*c.Delta.Content) {
				t.Errorf("streamed piece %q is not valid UTF-8", *c.Delta.Content)
			}
		}
	}
	if texts[0] != text {
		t.Errorf("streamed %q, whole %q", texts[0], text)
	}
	// A stop string from the middle of the answer cuts it there.
	runes := []rune(text)
	if len(runes) < 6 {
		t.Skipf("answer %q too short for a stop string", text)
	}
	stop := string(runes[len(runes)/2 : len(runes)/2+2])
	body, _ := json.Marshal(stop)
	code, data = post(t, ts, "/v1/chat/completions", `{`+req+`, "stop": [`+string(body)+`]}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	if got, want := decode(t, data).Choices[0].Message.Content, text[:strings.Index(text, stop)]; got != want {
		t.Errorf("stop %q: content %q, want %q", stop, got, want)
	}
}
