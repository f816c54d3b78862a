package gguf_test

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// TestIQ2NeedsImatrix: llama-quantize requires an importance matrix for
// every weight in an IQ1 or IQ2 type but token_embd and output
// (tensor_requires_imatrix), in its IQ1 and IQ2 file types as with a type
// for every weight; Convert refuses before anything is written, without
// one and with one that lacks such a weight's entry (named). token_embd
// and output need an entry too in IQ2_XXS, IQ2_XS and IQ1_S, which ggml
// quantizes only with importances (llama-quantize aborts there), not in
// IQ2_S or IQ1_M; a model none of whose weights stays in such a type
// (stories260K's rows of 64 and 172 fall back, IQ2_S's and IQ2_M's IQ3_S
// ones too) needs none.
func TestIQ2NeedsImatrix(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	stories := openCheckpoint(t, "models/stories260K-hf-mistral")
	m := randomImatrix(ck)
	partial := &gguf.Imatrix{Entries: maps.Clone(m.Entries)}
	delete(partial.Entries, "blk.3.ffn_up.weight")
	full := fullImatrix(ck)
	xxs, _ := gguf.ParseMix("iq2_xxs")
	xs, _ := gguf.ParseMix("iq2_xs")
	q4km, _ := gguf.ParseMix("q4_k_m")
	iq1m, _ := gguf.ParseMix("iq1_m")
	iq2xs := gguf.TypeIQ2_XS
	for _, tc := range []struct {
		name string
		opts gguf.ConvertOptions
		want string // "" for none
	}{
		{"IQ2_XXS mix, none", gguf.ConvertOptions{Mix: xxs}, "IQ2_XXS needs an importance matrix"},
		{"IQ2_XS mix, partial", gguf.ConvertOptions{Mix: xs, Imatrix: partial}, "IQ2_XS needs the importance matrix's entry for each IQ2_XS weight: none for blk.3.ffn_up.weight"},
		{"IQ2_XXS mix", gguf.ConvertOptions{Mix: xxs, Imatrix: m}, ""},
		{"IQ2_S, none", gguf.ConvertOptions{Type: gguf.TypeIQ2_S}, "IQ2_S needs an importance matrix"},
		{"IQ2_S, partial", gguf.ConvertOptions{Type: gguf.TypeIQ2_S, Imatrix: partial}, "none for blk.3.ffn_up.weight"},
		{"IQ2_S, token_embd without", gguf.ConvertOptions{Type: gguf.TypeIQ2_S, Imatrix: m}, ""},
		{"IQ2_XXS, token_embd without", gguf.ConvertOptions{Type: gguf.TypeIQ2_XXS, Imatrix: m}, "token_embd.weight in IQ2_XXS needs importances, and the importance matrix has no entry for it"},
		{"IQ2_XXS", gguf.ConvertOptions{Type: gguf.TypeIQ2_XXS, Imatrix: full}, ""},
		{"output type IQ2_XS, none", gguf.ConvertOptions{Mix: q4km, OutputType: &iq2xs}, "token_embd.weight in IQ2_XS needs importances, and no importance matrix is given"},
		{"output type IQ2_XS", gguf.ConvertOptions{Mix: q4km, OutputType: &iq2xs, Imatrix: full}, ""},
		{"IQ1_M mix, none", gguf.ConvertOptions{Mix: iq1m}, "IQ1_M needs an importance matrix (gptqtool imatrix, then --imatrix FILE), as llama-quantize does: its IQ1_M and IQ2_XXS weights"},
		{"IQ1_S, token_embd without", gguf.ConvertOptions{Type: gguf.TypeIQ1_S, Imatrix: m}, "token_embd.weight in IQ1_S needs importances"},
		{"IQ1_M, token_embd without", gguf.ConvertOptions{Type: gguf.TypeIQ1_M, Imatrix: m}, ""},
	} {
		err := gguf.Check(ck.cfg, tc.opts)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
		dir := t.TempDir()
		if _, err := gguf.FromCheckpoint(filepath.Join(dir, "x.gguf"), ck.set, ck.cfg, ck.tok, tc.opts); err == nil {
			t.Errorf("%s: Convert succeeded", tc.name)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s: the refusal left %v", tc.name, entries)
		}
	}
	s, _ := gguf.ParseMix("iq2_s")
	m2, _ := gguf.ParseMix("iq2_m")
	for _, opts := range []gguf.ConvertOptions{{Mix: xxs}, {Mix: xs}, {Mix: s}, {Mix: m2}, {Mix: iq1m}, {Type: gguf.TypeIQ2_XXS}, {Type: gguf.TypeIQ2_S}, {Type: gguf.TypeIQ1_S}} {
		if err := gguf.Check(stories.cfg, opts); err != nil {
			t.Errorf("stories260K in %s %s, no weight in an IQ2 type, without an importance matrix: %v", opts.Mix.Name, opts.Type, err)
		}
	}
}
