package tokenizer_test

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkEncodeWikiTextByteLevel encodes the whole WikiText-2 test
// split (1.29 MB, ../shared/fixtures) with Qwen2's byte-level vocabulary
// (testdata): the figure to compare with BenchmarkEncodeWikiText's
// SentencePiece one.
func BenchmarkEncodeWikiTextByteLevel(b *testing.B) {
	path := filepath.Join("..", "..", "..", "shared", "fixtures", "datasets", "wikitext-2-raw", "wiki.test.raw")
	data, err := os.ReadFile(path)
	if err != nil {
		b.Skipf("fixture %s missing: %v", path, err)
	}
	text := string(data)
	for _, name := range []string{"qwen2", "gpt-2"} {
		tok := loadTestdataVocab(b, name)
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
