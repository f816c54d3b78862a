package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// TestDTypeNames checks that --dtype takes the names users bring from
// PyTorch, transformers and llama.cpp in any case (convert writes the dtype
// asked for: the tensors of stories260K, f32, come out BF16 for
// "BFloat16" and F16 for "FP16"), and that the commands loading a model
// take them too (generate on the CPU with --dtype Float32), where only
// f32, f16 and bf16 were accepted.
func TestDTypeNames(t *testing.T) {
	for v, want := range map[string]string{"fp16": "f16", "Float16": "f16", "half": "f16", "BFloat16": "bf16", "BF16": "bf16",
		"FP32": "f32", "float": "f32", "Auto": "auto", "fp8": "fp8"} {
		if got := dtypeFlag(v); got != want {
			t.Errorf("dtypeFlag(%q) = %q, want %q", v, got, want)
		}
	}
	model := fixturePath(t, "models/stories260K-hf-mistral")
	for flag, want := range map[string]safetensors.DType{"BFloat16": safetensors.BF16, "FP16": safetensors.F16} {
		out := filepath.Join(t.TempDir(), "out")
		if _, stderr, err := run(t, "convert", "--in", model, "--out", out, "--dtype", flag); err != nil {
			t.Fatalf("convert --dtype %s: %v\n%s", flag, err, stderr)
		}
		set, err := safetensors.OpenDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range set.Names() {
			tn, err := set.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			if tn.DType != want {
				t.Errorf("convert --dtype %s: tensor %q is %s, want %s", flag, name, tn.DType, want)
				break
			}
		}
		set.Close()
	}
	stdout, stderr, err := run(t, "generate", "--device", "cpu", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "4",
		"--temperature", "0", "--dtype", "Float32")
	if err != nil || strings.TrimSpace(stdout) == "" {
		t.Errorf("generate --dtype Float32: %v, output %q\n%s", err, stdout, stderr)
	}
}

// TestShortTextNamed checks that a text shorter than one window is refused
// naming the --text file and counting its tokens in English ("1 token"
// for an empty file: BOS alone), where the message named neither the file
// nor the flag and said "1 tokens".
func TestShortTextNamed(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral")
	empty := filepath.Join(t.TempDir(), "empty.txt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"verify", "perplexity"}, {"verify", "kl", "--baseline", model}} {
		_, _, err := run(t, append(cmd, "--device", "cpu", "--model", model, "--text", empty, "--ctx", "64")...)
		if err == nil || !strings.Contains(err.Error(), "--text "+empty+": 1 token (BOS included), fewer than one window of --ctx 64") {
			t.Errorf("%s, empty text: %v", cmd[1], err)
		}
	}
}

// TestTextNotUTF8Named: a --text file that is not UTF-8 is refused naming
// the flag, the file and the byte offset (as calibrate names a dataset's),
// where the message read "FILE: tokenizer: encode: text is not valid utf-8",
// and a missing one names the flag ("open FILE: no such file" before).
func TestTextNotUTF8Named(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral")
	bad := filepath.Join(t.TempDir(), "latin1.txt")
	if err := os.WriteFile(bad, []byte("Once upon a caf\xe9 time"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"verify", "perplexity"}, {"verify", "kl", "--baseline", model}} {
		_, _, err := run(t, append(cmd, "--device", "cpu", "--model", model, "--text", bad, "--ctx", "64")...)
		want := "--text " + bad + ": invalid UTF-8 at byte 15"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", cmd[1], err, want)
		}
		missing := bad + ".missing"
		_, _, err = run(t, append(cmd, "--device", "cpu", "--model", model, "--text", missing, "--ctx", "64")...)
		if want := "--text: open " + missing; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s, missing text: %v, want an error containing %q", cmd[1], err, want)
		}
	}
}

// TestShortTextDefaultCtx: without --ctx, a text shorter than one window
// is refused naming the window's length as the default (stories260K: 512,
// its max_position_embeddings), where the message said "--ctx 512", a flag
// the user never gave.
func TestShortTextDefaultCtx(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral")
	short := filepath.Join(t.TempDir(), "short.txt")
	if err := os.WriteFile(short, []byte("Once upon a time"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"verify", "perplexity"}, {"verify", "kl", "--baseline", model}} {
		_, _, err := run(t, append(cmd, "--device", "cpu", "--model", model, "--text", short)...)
		const want = "fewer than one window of 512 tokens (the default window: --ctx not given)"
		if err == nil || !strings.Contains(err.Error(), "--text "+short+": ") || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "--ctx 512") {
			t.Errorf("%s, short text without --ctx: %v, want %q", cmd[1], err, want)
		}
	}
}

// TestKLTokenizersCompared checks that verify kl refuses two checkpoints
// whose tokenizers split the text differently, naming both and the text,
// before either model loads, and so does perplexity --baseline, whose help
// promises the baseline the same windows (it tokenized the text with each
// model's tokenizer and printed a delta between perplexities per token of
// two different tokenizations, e.g. +72% for openchat-tiny against
// stories260K): openchat-tiny against stories260K (vocabularies
// of 32,002 and 512), and stories260K against a copy whose tokenizer.json
// swaps the ids of two tokens the text uses (a vocabulary of the same size),
// which KL compared position by position before.
func TestKLTokenizersCompared(t *testing.T) {
	tiny, stories := fixturePath(t, "models/openchat-tiny"), fixturePath(t, "models/stories260K-hf-mistral")
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	body := strings.Repeat("Once upon a time, there was a little girl who liked to read. ", 20)
	if err := os.WriteFile(text, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	swapped := filepath.Join(dir, "swapped")
	copyDir(t, stories, swapped)
	tok, err := tokenizer.Load(stories)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(body)
	if err != nil || len(ids) < 2 {
		t.Fatalf("encode: %v, %d ids", err, len(ids))
	}
	raw, err := os.ReadFile(filepath.Join(stories, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	vocab := doc["model"].(map[string]any)["vocab"].(map[string]any)
	var a, b string // the pieces of the text's first two distinct ids
	for piece, id := range vocab {
		switch id.(json.Number).String() {
		case fmt.Sprint(ids[0]):
			a = piece
		case fmt.Sprint(ids[slices.IndexFunc(ids, func(v int) bool { return v != ids[0] })]):
			b = piece
		}
	}
	if a == "" || b == "" {
		t.Fatalf("ids %d and the next distinct one not in tokenizer.json's vocab", ids[0])
	}
	vocab[a], vocab[b] = vocab[b], vocab[a]
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(swapped, "tokenizer.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{{tiny, stories}, {stories, swapped}} {
		for _, cmd := range []string{"kl", "perplexity"} {
			stdout, _, err := run(t, "verify", cmd, "--device", "cpu", "--model", c[0], "--baseline", c[1], "--text", text, "--ctx", "64")
			want := fmt.Sprintf("%s: %s and %s tokenize --text %s differently", cmd, c[0], c[1], text)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: err = %v, want one containing %q", cmd, err, want)
			}
			if stdout != "" {
				t.Errorf("%s: stdout = %q, want nothing", cmd, stdout)
			}
		}
	}
}

// TestHelpDefaults: a value a command's usage line shows for a flag
// ("[--batch 1,8]", "[--dtype bf16]"; placeholders such as N or DIR aside)
// is the flag's default as cobra prints it, and no flag's help states a
// default besides the one cobra appends, where bench decode showed
// "[--batch 1,8,32,64]" over a default of [1,8] and --ahead read "(default
// false where GPTQTOOL_AHEAD=0) (default true)" (a QA pass).
func TestHelpDefaults(t *testing.T) {
	shown := regexp.MustCompile(`\[(--[a-z-]+) ([^\]\s]+)`)
	literal := regexp.MustCompile(`^([0-9][0-9,]*|[a-z][a-z0-9]*)$`)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, m := range shown.FindAllStringSubmatch(c.Use, -1) {
			f := c.Flags().Lookup(strings.TrimPrefix(m[1], "--"))
			if f == nil {
				t.Errorf("%s: usage line shows %s, which is not a flag", c.CommandPath(), m[1])
				continue
			}
			if !literal.MatchString(m[2]) {
				continue
			}
			want := f.DefValue
			if strings.HasSuffix(f.Value.Type(), "Slice") {
				want = strings.Trim(want, "[]")
			}
			if m[2] != want {
				t.Errorf("%s: usage line shows %s %s, the default is %s", c.CommandPath(), m[1], m[2], f.DefValue)
			}
		}
		for _, line := range strings.Split(c.LocalFlags().FlagUsages(), "\n") {
			if strings.Count(line, "(default") > 1 {
				t.Errorf("%s: two defaults: %s", c.CommandPath(), strings.TrimSpace(line))
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
}

// TestCtxHelpNamesBaseline: --ctx's help in perplexity and kl, the commands
// with a --baseline, says that its default is lowered to the baseline's
// context too (as setup does and the README says), where it named the
// model's alone.
func TestCtxHelpNamesBaseline(t *testing.T) {
	for _, c := range []*cobra.Command{newPerplexityCmd(), newKLCmd()} {
		if c.Flags().Lookup("baseline") == nil {
			t.Fatalf("%s has no --baseline", c.Name())
		}
		if usage := c.Flags().Lookup("ctx").Usage; !strings.Contains(usage, "baseline's") {
			t.Errorf("%s --ctx: %q does not name the baseline's context", c.Name(), usage)
		}
	}
}

// TestTokenizerPastVocabRefused: a checkpoint whose tokenizer has more
// tokens than its config.json's vocab_size (stories260K's weights, vocab
// 512, beside openchat's tokenizer of 32,002) is refused before any work,
// naming both counts and the config, by verify, calibrate and quantize,
// where verify failed in its first window with "token id 5606 outside vocab
// [0, 512)" and quantize once the dataset was read and embedded.
func TestTokenizerPastVocabRefused(t *testing.T) {
	stories, tiny := fixturePath(t, "models/stories260K-hf-mistral"), fixturePath(t, "models/openchat-tiny")
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	copyDir(t, stories, model)
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		data, err := os.ReadFile(filepath.Join(tiny, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(model, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("Once upon a time, there was a little girl. ", 40)), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("the tokenizer has 32002 tokens, more than vocab_size 512 in %s", filepath.Join(model, "config.json"))
	for _, args := range [][]string{
		{"verify", "perplexity", "--device", "cpu", "--model", model, "--text", text, "--ctx", "64"},
		{"verify", "kl", "--device", "cpu", "--model", model, "--baseline", model, "--text", text, "--ctx", "64"},
		{"calibrate", "--model", model, "--dataset", text, "--nsamples", "2", "--seq-len", "16"},
		{"quantize", "--device", "cpu", "--model", model, "--dataset", text, "--nsamples", "2", "--seq-len", "16",
			"--bits", "8", "--group", "32", "--estimate=false", "--out", filepath.Join(dir, "q")},
	} {
		_, stderr, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", strings.Join(args[:2], " "), err, want)
		}
		if strings.Contains(stderr, "calibrate: read") {
			t.Errorf("%s read the dataset before the refusal:\n%s", args[0], stderr)
		}
	}
}

// TestTokenizerFitsSpecialPastVocab: special added tokens past vocab_size
// alone (openchat's <|pad_0|> 32001 over a config of 32,001) are accepted,
// as transformers loads such a checkpoint and text reaches them only where
// it spells them; EOS past it (<|end_of_turn|> 32000, which generation
// ends on) and an ordinary piece past it (31,999) are refused naming them.
// The first refusal took every token past vocab_size alike.
func TestTokenizerFitsSpecialPastVocab(t *testing.T) {
	dir := fixturePath(t, "models/openchat-tiny")
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		vocab int
		want  string // "" accepted
	}{
		{32002, ""},
		{32001, ""},
		{32000, `token 32000 "<|end_of_turn|>"`},
		{31999, `token 31999 "`},
	} {
		cfg := &hfconfig.Config{VocabSize: tc.vocab, File: filepath.Join(dir, "config.json")}
		err := tokenizerFits(dir, tok, cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("vocab_size %d: %v, want accepted", tc.vocab, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("vocab_size %d: %v, want an error containing %q", tc.vocab, err, tc.want)
		}
	}
}

// TestParseShardSize checks --max-shard-size against transformers'
// convert_file_size_to_int (utils/hub.py), values derived by hand from it:
// GiB/MiB/KiB are powers of two, GB/MB/KB powers of ten, and a lowercase
// final "b" after GB/MB/KB means bits (the byte count divided by 8, floored).
func TestParseShardSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"5GB", 5_000_000_000},
		{"5gb", 5_000_000_000 / 8},
		{"5Gb", 5_000_000_000 / 8},
		{"5GiB", 5 << 30},
		{"5gib", 5 << 30},
		{"5Gib", 5 << 30},
		{"3MB", 3_000_000},
		{"3Mb", 375_000},
		{"3MiB", 3 << 20},
		{"7KB", 7_000},
		{"7Kb", 875},
		{"7kB", 7_000},
		{"7KiB", 7 << 10},
		{"1Kb", 125},
		{"4096", 4096},
		{"0", 0},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := parseShardSize(c.in)
			if err != nil || got != c.want {
				t.Errorf("parseShardSize(%q) = %d, %v, want %d", c.in, got, err, c.want)
			}
		})
	}
	for _, in := range []string{"5TB", "5XB", "5GiBb", "lots", "GB"} {
		if got, err := parseShardSize(in); err == nil {
			t.Errorf("parseShardSize(%q) = %d, want an error", in, got)
		}
	}
	// The command names the flag in the error.
	_, _, err := run(t, "convert", "--in", t.TempDir(), "--out", filepath.Join(t.TempDir(), "o"), "--max-shard-size", "5TB")
	if err == nil || !strings.Contains(err.Error(), "--max-shard-size") {
		t.Errorf("convert --max-shard-size 5TB: %v, want an error naming --max-shard-size", err)
	}
}
