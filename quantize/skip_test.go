package quantize_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/quantize"
)

func TestSplitSkipList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a,b", []string{"a", "b"}},
		{`re:x\.(1|2),y`, []string{`re:x\.(1|2)`, "y"}},
		{`re:x\.[0-9]{1,2}\.y, z,`, []string{`re:x\.[0-9]{1,2}\.y`, " z"}},
		{" , ", nil},
		// An escaped bracket is a literal: it opens nothing.
		{`re:x\(y,z`, []string{`re:x\(y`, "z"}},
		{`re:x\[,y`, []string{`re:x\[`, "y"}},
	} {
		if got := quantize.SplitSkipList(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SplitSkipList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseSkip(t *testing.T) {
	s, err := quantize.ParseSkip([]string{`re:model\.layers\.1\.mlp\.(gate|up)_proj`, "model.layers.0.self_attn.q_proj"}, 12)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj"}
	if got := s.Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	if p := s.PartialFused(); len(p) != 1 {
		t.Errorf("PartialFused() = %q, want layer 0's q/k/v alone", p)
	}
	if s.ModulesInBlock() != nil {
		t.Error("ModulesInBlock of a skip that differs between layers")
	}
	// re: matches the whole name: layer 1 is not layer 10 or 11.
	if s.Has(10, "mlp.gate_proj") || s.Has(11, "mlp.up_proj") {
		t.Error("re:...layers\\.1\\... matched layer 10 or 11")
	}
}

// TestSkipSharedExpert: a Qwen2-MoE's shared expert gate/up are one
// weight to vLLM (mlp.shared_expert.gate_up_proj): skipping one of them
// alone is a partial fused skip, and skipping both writes dynamic rules
// that match the fused name too, as a dense layer's gate/up do.
func TestSkipSharedExpert(t *testing.T) {
	_, cfg := fixtures.OpenCheckpoint(t, fixtures.Qwen2MoE(t, nil, synth.Options{DType: "f32", Seed: 8}))
	one, err := quantize.ParseSkipFor([]string{`re:model\.layers\.0\.mlp\.shared_expert\.gate_proj`}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := one.PartialFused(); len(p) != 1 || !strings.Contains(p[0], "shared_expert.gate_proj") {
		t.Errorf("PartialFused() = %q, want layer 0's shared gate named", p)
	}
	both, err := quantize.ParseSkipFor([]string{`re:model\.layers\.0\.mlp\.shared_expert\.(gate|up)_proj`}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := both.PartialFused(); len(p) != 0 {
		t.Errorf("PartialFused() = %q, want none", p)
	}
	qc := gptq.DefaultQuantizeConfig()
	qc.Dynamic = both.Dynamic()
	for name, want := range map[string]bool{
		"model.layers.0.mlp.shared_expert.gate_up_proj": true, "model.layers.0.mlp.shared_expert.up_proj": true,
		"model.layers.0.mlp.shared_expert.down_proj": false, "model.layers.2.mlp.shared_expert.gate_up_proj": false,
	} {
		if got, err := qc.Skipped(name); err != nil || got != want {
			t.Errorf("Skipped(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
}
