package tokenizer

import (
	"path/filepath"
	"testing"
)

// BenchmarkEncodeWikiText encodes the whole WikiText-2 test split (1.29 MB)
// with each loader's tokenizer (the Mistral SentencePiece vocabulary);
// BenchmarkEncodeWikiTextByteLevel does the same with Qwen2's.
func BenchmarkEncodeWikiText(b *testing.B) {
	text, _ := readWiki(b)
	toks := loadBoth(b, openchatDir)
	for _, name := range loaderNames {
		tok := toks[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			var n int
			for b.Loop() {
				ids, err := tok.Encode(text)
				if err != nil {
					b.Fatal(err)
				}
				n = len(ids)
			}
			b.ReportMetric(float64(n), "ids")
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkDecodeWikiText decodes the corpus ids.
func BenchmarkDecodeWikiText(b *testing.B) {
	text, ids := readWiki(b)
	tok := loadBoth(b, openchatDir)["tokenizer.json"]
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := tok.Decode(ids); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeChat encodes a short three-turn openchat conversation.
func BenchmarkEncodeChat(b *testing.B) {
	tok := loadBoth(b, openchatDir)["tokenizer.json"]
	msgs := []Message{{Role: "user", Content: "Hello"}, {Role: "assistant", Content: "Hi"}, {Role: "user", Content: "How are you today?"}}
	opts := ChatOptions{AddGenerationPrompt: true}
	for b.Loop() {
		if _, err := tok.EncodeChat(msgs, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad measures loading the openchat tokenizer each way.
func BenchmarkLoad(b *testing.B) {
	needFile(b, filepath.Join(openchatDir, "tokenizer.json"))
	b.Run("tokenizer.json", func(b *testing.B) {
		for b.Loop() {
			if _, err := Load(openchatDir); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tokenizer.model", func(b *testing.B) {
		for b.Loop() {
			if _, err := loadSentencePieceDir(openchatDir); err != nil {
				b.Fatal(err)
			}
		}
	})
}
