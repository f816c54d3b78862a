package model

import (
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// BenchmarkForward measures the end-to-end forward pass of openchat-tiny:
// a 1024-token window (the perplexity workload) and one decode step at
// position 512 with the KV cache.
func BenchmarkForward(b *testing.B) {
	dir := fixture(b, "models/openchat-tiny")
	m, err := Load(dir, cpu.New(0))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ids := fixtures.WikiIDs(b)[:1024]
	b.Run("prefill_T1024", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Forward(ids, nil, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(ids))*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
	})
	b.Run("decode_pos512", func(b *testing.B) {
		c := m.NewCache(513)
		defer c.Free()
		if _, err := m.ForwardLast(ids[:512], c, nil); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			c.Truncate(512)
			if _, err := m.ForwardLast(ids[512:513], c, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
	})
}

// BenchmarkPerplexityWikitext is the acceptance run: openchat-tiny
// perplexity over the whole wiki.test.raw at ctx 1024 (321 windows;
// transformers fp32 gives 170.2816). Run it with -benchtime 1x.
func BenchmarkPerplexityWikitext(b *testing.B) {
	dir := fixture(b, "models/openchat-tiny")
	m, err := Load(dir, cpu.New(0))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	tokens := fixtures.WikiIDs(b)
	const ctx = 1024
	windows := len(tokens) / ctx
	var ppl float64
	for b.Loop() {
		var mean float64
		for w := range windows {
			nll, n := windowNLL(b, m, tokens[w*ctx:(w+1)*ctx])
			mean += nll / float64(n) / float64(windows)
		}
		ppl = math.Exp(mean)
	}
	b.Logf("perplexity %.4f over %d windows (transformers fp32: 170.2816)", ppl, windows)
	b.ReportMetric(ppl, "ppl")
	b.ReportMetric(float64(windows), "windows")
	b.ReportMetric(float64(windows*ctx)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}
