package gguf_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// TestIQ3NeedsImatrix: as llama-quantize's tensor_requires_imatrix, a
// weight in IQ3_XXS needs an importance matrix in any file (IQ3_XS's
// attn_q, attn_k and middle ffn_gate and ffn_up; every weight of an
// all-IQ3_XXS conversion), token_embd and output aside, and is refused
// before anything is written without one or without its entry; IQ3_S and
// IQ3_M need none, nor does stories260K in IQ3_XXS (every row falls back
// to IQ4_NL), nor an output weight asked for in IQ3_XXS.
func TestIQ3NeedsImatrix(t *testing.T) {
	tiny := openCheckpoint(t, "models/openchat-tiny")
	stories := openCheckpoint(t, "models/stories260K-hf-mistral")
	m := randomImatrix(tiny)
	partial := &gguf.Imatrix{Entries: maps.Clone(m.Entries)}
	delete(partial.Entries, "blk.3.ffn_up.weight")
	mix := func(name string) gguf.Mix {
		m, ok := gguf.ParseMix(name)
		if !ok {
			t.Fatalf("no %s mix", name)
		}
		return m
	}
	iq3xxs := gguf.TypeIQ3_XXS
	for _, tc := range []struct {
		name string
		ck   *checkpoint
		opts gguf.ConvertOptions
		want string // "": accepted
	}{
		{"IQ3_XS", tiny, gguf.ConvertOptions{Mix: mix("iq3_xs")}, "IQ3_XS needs an importance matrix (gptqtool imatrix, then --imatrix FILE), as llama-quantize does: its IQ3_XXS weights are too coarse without one"},
		{"IQ3_XS, an entry missing", tiny, gguf.ConvertOptions{Mix: mix("iq3_xs"), Imatrix: partial}, "IQ3_XS needs the importance matrix's entry for each IQ3_XXS weight: none for blk.3.ffn_up.weight"},
		{"IQ3_XS with one", tiny, gguf.ConvertOptions{Mix: mix("iq3_xs"), Imatrix: m}, ""},
		{"IQ3_XXS type", tiny, gguf.ConvertOptions{Type: gguf.TypeIQ3_XXS}, "IQ3_XXS needs an importance matrix"},
		{"IQ3_XXS type, an entry missing", tiny, gguf.ConvertOptions{Type: gguf.TypeIQ3_XXS, Imatrix: partial}, "none for blk.3.ffn_up.weight"},
		{"IQ3_XXS type, rows falling back", stories, gguf.ConvertOptions{Type: gguf.TypeIQ3_XXS}, ""},
		{"IQ3_S", tiny, gguf.ConvertOptions{Mix: mix("iq3_s")}, ""},
		{"IQ3_M", tiny, gguf.ConvertOptions{Mix: mix("iq3_m")}, ""},
		{"IQ3_S type", tiny, gguf.ConvertOptions{Type: gguf.TypeIQ3_S}, ""},
		{"output in IQ3_XXS", tiny, gguf.ConvertOptions{Mix: mix("q4_k_m"), OutputType: &iq3xxs}, ""},
	} {
		err := gguf.Check(tc.ck.cfg, tc.opts)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	err := gguf.Check(tiny.cfg, gguf.ConvertOptions{Mix: mix("iq3_xxs")})
	if err == nil || !strings.Contains(err.Error(), "IQ3_XXS needs an importance matrix") {
		t.Errorf("IQ3_XXS mix without an importance matrix: %v", err)
	}
}
