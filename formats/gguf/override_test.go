package gguf

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// loadConfig reads the config.json of a shared fixture directory
// ($GPTQTOOL_FIXTURES, else ../shared/fixtures), skipping the test naming
// the missing path.
func loadConfig(t *testing.T, rel string) *hfconfig.Config {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "fixtures", rel)
	if d := os.Getenv("GPTQTOOL_FIXTURES"); d != "" {
		dir = filepath.Join(d, rel)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("fixture %s missing: %v", dir, err)
	}
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mustMix(t *testing.T, name string) Mix {
	t.Helper()
	m, ok := ParseMix(name)
	if !ok {
		t.Fatalf("no mix %s", name)
	}
	return m
}

func overrides(t *testing.T, flags ...string) []TensorTypeOverride {
	t.Helper()
	var os []TensorTypeOverride
	for _, f := range flags {
		o, err := ParseTensorTypeOverride(f)
		if err != nil {
			t.Fatalf("ParseTensorTypeOverride(%q): %v", f, err)
		}
		os = append(os, o)
	}
	return os
}

// fakeImatrix has an entry of the right length for every linear weight of
// a model of config cfg.
func fakeImatrix(cfg *hfconfig.Config) *Imatrix {
	m := &Imatrix{Entries: map[string]ImatrixEntry{}}
	for _, s := range tensorSpecs(cfg) {
		if len(s.shape) == 2 && strings.HasPrefix(s.name, "blk.") {
			m.Entries[s.name] = ImatrixEntry{Sum2: make([]float32, s.shape[1]), Count: 1}
		}
	}
	return m
}

// TestOverrides7B: llama-quantize's --pure, --tensor-type,
// --leave-output-tensor and --exclude-weights on a 7B Mistral
// (openchat-3.5-1210's config: 32 layers, 4 query heads a KV head, rows of
// 4096 and 14336, whole blocks of every type), counted by hand from
// llama_tensor_get_type over the 226 2-D weights (TestMixTypes has the
// counts without them).
func TestOverrides7B(t *testing.T) {
	cfg := loadConfig(t, filepath.Join("configs", "openchat-3.5-1210"))
	q8, f16 := TypeQ8_0, TypeF16
	for _, tc := range []struct {
		name string
		opts ConvertOptions
		want map[TensorType]int
	}{
		// Every weight in Q4_K, the output too (the mix gives it Q6_K,
		// and 16 attn_v and 16 ffn_down Q6_K).
		{"q4_k_m --pure", ConvertOptions{Mix: mustMix(t, "q4_k_m"), Pure: true}, map[TensorType]int{TypeQ4_K: 226}},
		// The 32 ffn_down in Q8_0, the 16 use_more_bits ones included;
		// attn_v's 16 and the output stay Q6_K.
		{"q4_k_m --tensor-type ffn_down=q8_0", ConvertOptions{Mix: mustMix(t, "q4_k_m"), TensorTypes: overrides(t, "ffn_down=q8_0")},
			map[TensorType]int{TypeQ4_K: 177, TypeQ6_K: 17, TypeQ8_0: 32}},
		// --pure with an override: the override's weights, the rest Q4_K.
		{"q4_k_m --pure --tensor-type ffn_down=q8_0", ConvertOptions{Mix: mustMix(t, "q4_k_m"), Pure: true, TensorTypes: overrides(t, "ffn_down=q8_0")},
			map[TensorType]int{TypeQ4_K: 194, TypeQ8_0: 32}},
		// Q3_K_M: every attn_v in Q8_0 (the rules' 2 Q5_K and 30 Q4_K);
		// ffn_gate and ffn_up (64) Q4_K; attn_output stays Q4_K (32),
		// ffn_down Q5_K in layers 0-1, Q4_K in 30; attn_q, attn_k and
		// token_embd Q3_K (65), the output Q6_K.
		{"q3_k_m --tensor-type attn_v=q8_0 --tensor-type ffn_(gate|up)=q4_k", ConvertOptions{Mix: mustMix(t, "q3_k_m"), TensorTypes: overrides(t, "attn_v=q8_0", "ffn_(gate|up)=q4_k")},
			map[TensorType]int{TypeQ8_0: 32, TypeQ4_K: 126, TypeQ5_K: 2, TypeQ3_K: 65, TypeQ6_K: 1}},
		// The output left in F16; the rest as Q4_K_M gives it.
		{"q4_k_m --leave-output-tensor", ConvertOptions{Mix: mustMix(t, "q4_k_m"), LeaveOutput: true},
			map[TensorType]int{TypeQ4_K: 193, TypeQ6_K: 32, TypeF16: 1}},
		// --output-tensor-type and --token-embedding-type win over a
		// --tensor-type that matches their weights (anchored: "output"
		// alone would match every attn_output too).
		{`q4_k_m --tensor-type ^(output|token_embd)\.=q5_k`, ConvertOptions{Mix: mustMix(t, "q4_k_m"), OutputType: &q8, TokenEmbeddingType: &f16, TensorTypes: overrides(t, `^(output|token_embd)\.=q5_k`)},
			map[TensorType]int{TypeQ4_K: 192, TypeQ6_K: 32, TypeQ8_0: 1, TypeF16: 1}},
		// A float file type takes no overrides and is pure anyway, as in
		// llama-quantize (ggml_is_quantized(default_type)).
		{"f16 --pure --tensor-type ffn_down=q8_0", ConvertOptions{Type: TypeF16, Pure: true, TensorTypes: overrides(t, "ffn_down=q8_0")}, map[TensorType]int{TypeF16: 226}},
		// Q4_0 keeps the first eighth of ffn_down in Q4_1 with an
		// importance matrix; ffn_down's entries excluded, the matrix still
		// has entries, so the rule holds; every entry excluded, it is as
		// without one (llama-quantize passes no imatrix then).
		{"q4_0 --imatrix --exclude-weights ffn_down", ConvertOptions{Mix: mustMix(t, "q4_0"), Imatrix: fakeImatrix(cfg), ExcludeWeights: []string{"ffn_down"}},
			map[TensorType]int{TypeQ4_0: 221, TypeQ4_1: 4, TypeQ6_K: 1}},
		{"q4_0 --imatrix --exclude-weights blk.", ConvertOptions{Mix: mustMix(t, "q4_0"), Imatrix: fakeImatrix(cfg), ExcludeWeights: []string{"blk."}},
			map[TensorType]int{TypeQ4_0: 225, TypeQ6_K: 1}},
	} {
		res, _, _, err := plan(cfg, tc.opts)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got := map[TensorType]int{}
		for _, ct := range res.Tensors {
			if len(ct.Shape) == 2 {
				got[ct.Type]++
			}
		}
		if !maps.Equal(got, tc.want) || len(res.Fallbacks) != 0 {
			t.Errorf("%s: %v (fallbacks %v), want %v", tc.name, got, res.Fallbacks, tc.want)
		}
	}
}

// TestOverridesCountLayers: llama.cpp's layer rules see not a weight's
// layer but how many weights of its kind they have typed before it
// (qs.i_attention_wv, i_ffn_down, i_ffn_gate, i_ffn_up), and a weight a
// --tensor-type pattern types is not counted: on the 7B Mistral, the
// layers in each kind's types as llama-quantize --dry-run gives them
// (built from llama.cpp's source beside node-llama-cpp's bundle), not as
// the layer numbers would.
func TestOverridesCountLayers(t *testing.T) {
	cfg := loadConfig(t, filepath.Join("configs", "openchat-3.5-1210"))
	im := fakeImatrix(cfg)
	for _, tc := range []struct {
		name string
		opts ConvertOptions
		kind string
		want map[TensorType][]int // layers by type, the rest in Base
	}{
		// ffn_down of layers 4..31 are the rules' 0..27: Q6_K where
		// use_more_bits(0..27, 32) holds, not in 4..31's own layers
		// (3 of 4..7, 28..31).
		{`q4_k_m --tensor-type blk\.[0-3]\.ffn_down=q8_0`, ConvertOptions{Mix: mustMix(t, "q4_k_m"), TensorTypes: overrides(t, `blk\.[0-3]\.ffn_down=q8_0`)}, "ffn_down",
			map[TensorType][]int{TypeQ8_0: {0, 1, 2, 3}, TypeQ6_K: {4, 5, 6, 7, 10, 13, 16, 19, 22, 25, 28, 31}}},
		{`q4_k_m --tensor-type blk\.(1|5)\.attn_v=q8_0`, ConvertOptions{Mix: mustMix(t, "q4_k_m"), TensorTypes: overrides(t, `blk\.(1|5)\.attn_v=q8_0`)}, "attn_v",
			map[TensorType][]int{TypeQ8_0: {1, 5}, TypeQ6_K: {0, 2, 3, 4, 8, 11, 14, 17, 20, 23, 26, 29, 30, 31}}},
		// IQ3_XS's ffn_up in IQ3_XXS from the rules' layer 4 to 27: layers
		// 5 to 28 once layer 3's is overridden.
		{`iq3_xs --tensor-type blk\.3\.ffn_(gate|up)=q8_0`, ConvertOptions{Mix: mustMix(t, "iq3_xs"), Imatrix: im, TensorTypes: overrides(t, `blk\.3\.ffn_(gate|up)=q8_0`)}, "ffn_up",
			map[TensorType][]int{TypeQ8_0: {3}, TypeIQ3_XXS: {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28}}},
	} {
		res, _, _, err := plan(cfg, tc.opts)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got := map[TensorType][]int{}
		for _, ct := range res.Tensors {
			if strings.HasSuffix(ct.Name, "."+tc.kind+".weight") && ct.Type != tc.opts.Mix.Base {
				got[ct.Type] = append(got[ct.Type], layerOf(ct.Name))
			}
		}
		if !maps.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("%s: %s layers by type %v, want %v", tc.name, tc.kind, got, tc.want)
		}
	}
}

// TestOverridesTiny: the type of every 2-D weight of openchat-tiny (6
// layers, 2 query heads a KV head, rows of 256, ffn_down's of 896: not
// whole blocks of 256, token_embd tied: the output) and stories260K (5
// layers, rows of 64, ffn_down's of 172: not whole blocks of 32, untied)
// under each flag, worked out by hand from llama_tensor_get_type and
// tensor_type_fallback; norms stay F32.
func TestOverridesTiny(t *testing.T) {
	tiny := loadConfig(t, filepath.Join("models", "openchat-tiny"))
	stories := loadConfig(t, filepath.Join("models", "stories260K-hf-mistral"))
	q8, q5k, f16 := TypeQ8_0, TypeQ5_K, TypeF16
	layer := func(name string) int {
		i, _ := strconv.Atoi(strings.Split(name, ".")[1])
		return i
	}
	is := func(name, kind string) bool { return strings.HasSuffix(name, "."+kind+".weight") }
	// q4km is Q4_K_M's type of a weight of openchat-tiny: use_more_bits
	// for 6 layers is layers 2 and 5 (attn_v Q6_K, ffn_down Q6_K → Q8_0),
	// the other ffn_down Q4_K → Q5_0, token_embd (the output) Q6_K.
	q4km := func(n string) TensorType {
		more := layer(n) == 2 || layer(n) == 5
		switch {
		case n == "token_embd.weight", is(n, "attn_v") && more:
			return TypeQ6_K
		case is(n, "ffn_down") && more:
			return TypeQ8_0
		case is(n, "ffn_down"):
			return TypeQ5_0
		}
		return TypeQ4_K
	}
	for _, tc := range []struct {
		name      string
		cfg       *hfconfig.Config
		opts      ConvertOptions
		want      func(name string) TensorType
		fallbacks int
	}{
		// --pure: Q4_K everywhere, token_embd (the output) too, ffn_down
		// falling back to Q5_0 (tensor_type_fallback).
		{"tiny q4_k_m --pure", tiny, ConvertOptions{Mix: mustMix(t, "q4_k_m"), Pure: true}, func(n string) TensorType {
			if is(n, "ffn_down") {
				return TypeQ5_0
			}
			return TypeQ4_K
		}, 6},
		// ffn_down's 896 are whole Q8_0 blocks: no fallback.
		{"tiny q4_k_m --tensor-type ffn_down=q8_0", tiny, ConvertOptions{Mix: mustMix(t, "q4_k_m"), TensorTypes: overrides(t, "ffn_down=q8_0")}, func(n string) TensorType {
			if is(n, "ffn_down") {
				return TypeQ8_0
			}
			return q4km(n)
		}, 0},
		// An override's type falls back too: Q6_K → Q8_0 for ffn_down.
		{"tiny q4_k_m --tensor-type FFN_DOWN=Q6_K", tiny, ConvertOptions{Mix: mustMix(t, "q4_k_m"), TensorTypes: overrides(t, "FFN_DOWN=Q6_K")}, func(n string) TensorType {
			if is(n, "ffn_down") {
				return TypeQ8_0
			}
			return q4km(n)
		}, 6},
		// The first matching pattern wins: layer 0's weights (ffn_down's
		// included) Q8_0, the third pattern shadowed by the first; the
		// other layers' attn_* Q5_K, attn_v of layers 2 and 5 included
		// (an override is not the mix's rule); "attn" also matches
		// attn_norm, which is 1-D and stays F32. ffn_down of layers 1..5
		// are the rules' 0..4 (layer 0's is not counted), so layer 3's,
		// not 2's and 5's, is Q6_K → Q8_0.
		{`tiny q4_k_m --tensor-type blk\.0\.=q8_0 attn=q5_k blk\.0\.attn_v=f16`, tiny, ConvertOptions{Mix: mustMix(t, "q4_k_m"), TensorTypes: overrides(t, `blk\.0\.=q8_0`, "attn=q5_k", `blk\.0\.attn_v=f16`)}, func(n string) TensorType {
			switch {
			case strings.HasPrefix(n, "blk.0."):
				return TypeQ8_0
			case strings.Contains(n, "attn"):
				return TypeQ5_K
			case is(n, "ffn_down") && layer(n) == 3:
				return TypeQ8_0
			case is(n, "ffn_down"):
				return TypeQ5_0
			}
			return q4km(n)
		}, 5},
		// An override of the tied token_embd wins over the output type
		// that the mix's rule would give it; --token-embedding-type wins
		// over the override.
		{"tiny q4_k_m --output-tensor-type q5_k --tensor-type token_embd=q8_0", tiny, ConvertOptions{Mix: mustMix(t, "q4_k_m"), OutputType: &q5k, TensorTypes: overrides(t, "token_embd=q8_0")}, func(n string) TensorType {
			if n == "token_embd.weight" {
				return TypeQ8_0
			}
			return q4km(n)
		}, 6},
		{"tiny q4_k_m --token-embedding-type f16 --tensor-type token_embd=q8_0", tiny, ConvertOptions{Mix: mustMix(t, "q4_k_m"), TokenEmbeddingType: &f16, TensorTypes: overrides(t, "token_embd=q8_0")}, func(n string) TensorType {
			if n == "token_embd.weight" {
				return TypeF16
			}
			return q4km(n)
		}, 6},
		// --pure skips llama_tensor_get_type_impl, where a tied token_embd
		// takes --output-tensor-type: it stays Q4_K.
		{"tiny q4_k_m --pure --output-tensor-type q8_0", tiny, ConvertOptions{Mix: mustMix(t, "q4_k_m"), Pure: true, OutputType: &q8}, func(n string) TensorType {
			if is(n, "ffn_down") {
				return TypeQ5_0
			}
			return TypeQ4_K
		}, 6},
		// Without --pure, the tied token_embd (the output) takes it.
		{"tiny q4_k_m --output-tensor-type q8_0", tiny, ConvertOptions{Mix: mustMix(t, "q4_k_m"), OutputType: &q8}, func(n string) TensorType {
			if n == "token_embd.weight" {
				return TypeQ8_0
			}
			return q4km(n)
		}, 6},
		// stories260K in Q4_0: token_embd Q4_0; the output Q6_K by the
		// mix's rule, falling back to Q8_0; ffn_down (172) to F16.
		// --leave-output-tensor: the output F16, without a fallback.
		{"stories q4_0 --leave-output-tensor", stories, ConvertOptions{Mix: mustMix(t, "q4_0"), LeaveOutput: true}, func(n string) TensorType {
			if n == "output.weight" || is(n, "ffn_down") {
				return TypeF16
			}
			return TypeQ4_0
		}, 5},
		{"stories f32 --leave-output-tensor", stories, ConvertOptions{Type: TypeF32, LeaveOutput: true}, func(string) TensorType { return TypeF32 }, 0},
		// --pure Q4_K_M: Q4_K falls back to Q5_0 for rows of 64, the
		// output's too (not the mix's output rule's Q8_0), and to F16 for
		// ffn_down's 172 (not whole Q5_0 blocks either): every 2-D weight
		// falls back.
		{"stories q4_k_m --pure", stories, ConvertOptions{Mix: mustMix(t, "q4_k_m"), Pure: true}, func(n string) TensorType {
			if is(n, "ffn_down") {
				return TypeF16
			}
			return TypeQ5_0
		}, 37},
		// An anchored pattern for the output; --output-tensor-type wins
		// over it.
		{`stories q4_0 --tensor-type ^output\.weight$=q8_0`, stories, ConvertOptions{Mix: mustMix(t, "q4_0"), TensorTypes: overrides(t, `^output\.weight$=q8_0`)}, func(n string) TensorType {
			switch {
			case n == "output.weight":
				return TypeQ8_0
			case is(n, "ffn_down"):
				return TypeF16
			}
			return TypeQ4_0
		}, 5},
		{`stories q4_0 --output-tensor-type f16 --tensor-type ^output\.weight$=q8_0`, stories, ConvertOptions{Mix: mustMix(t, "q4_0"), OutputType: &f16, TensorTypes: overrides(t, `^output\.weight$=q8_0`)}, func(n string) TensorType {
			if n == "output.weight" || is(n, "ffn_down") {
				return TypeF16
			}
			return TypeQ4_0
		}, 5},
	} {
		res, _, _, err := plan(tc.cfg, tc.opts)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		for _, ct := range res.Tensors {
			want := TypeF32
			if len(ct.Shape) == 2 {
				want = tc.want(ct.Name)
			}
			if ct.Type != want {
				t.Errorf("%s: %s: %s, want %s", tc.name, ct.Name, ct.Type, want)
			}
		}
		if len(res.Fallbacks) != tc.fallbacks {
			t.Errorf("%s: %d fallbacks %v, want %d", tc.name, len(res.Fallbacks), res.Fallbacks, tc.fallbacks)
		}
	}
}

// TestParseTensorTypeOverride: PATTERN=TYPE split at the first '=', the
// pattern lowercased and the type read in any case, as llama-quantize's
// parse_tensor_type does; what it refuses, and what Go's RE2 cannot
// compile, is an error quoting the flag's value.
func TestParseTensorTypeOverride(t *testing.T) {
	for _, tc := range []struct {
		in      string
		pattern string
		typ     TensorType
	}{
		{"ffn_down=q8_0", "ffn_down", TypeQ8_0},
		{"FFN_Down=Q4_k", "ffn_down", TypeQ4_K},
		{`blk\.(0|1)\.attn_v=iq4_nl`, `blk\.(0|1)\.attn_v`, TypeIQ4_NL},
		{"token_embd=f16", "token_embd", TypeF16},
		{`\D=bf16`, `\d`, TypeBF16}, // lowercased as llama-quantize does
	} {
		got, err := ParseTensorTypeOverride(tc.in)
		if err != nil || got.Pattern != tc.pattern || got.Type != tc.typ {
			t.Errorf("ParseTensorTypeOverride(%q) = %+v, %v; want %q, %s", tc.in, got, err, tc.pattern, tc.typ)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"ffn_down", "want PATTERN=TYPE"},
		{"=q8_0", "missing tensor name pattern"},
		{"ffn_down=", "missing type"},
		{"ffn_down=q4_k_m", `type "q4_k_m": want a type gptqtool writes`},
		{"ffn_down=tq1_0", `type "tq1_0": want a type gptqtool writes`},
		{"a=b=q8_0", `type "b=q8_0"`},
		{"(ffn=q8_0", "missing closing )"},
		{`(?!ffn)down=q8_0`, "lookaround"},
		{`(?<=ffn_)down=q8_0`, `type "ffn_)down=q8_0"`}, // split at the first '=', as llama-quantize
		{`(a)\1=q8_0`, "backreferences"},
	} {
		_, err := ParseTensorTypeOverride(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), strconv.Quote(tc.in)) {
			t.Errorf("ParseTensorTypeOverride(%q): %v, want an error quoting it and containing %q", tc.in, err, tc.want)
		}
	}
}

// TestOverrideErrors: Check refuses, before a tensor is read, what the
// per-tensor options cannot mean for the model, naming the flag and its
// value or the tensor.
func TestOverrideErrors(t *testing.T) {
	tiny := loadConfig(t, filepath.Join("models", "openchat-tiny"))
	stories := loadConfig(t, filepath.Join("models", "stories260K-hf-mistral"))
	q8 := TypeQ8_0
	mix := mustMix(t, "q4_k_m")
	for _, tc := range []struct {
		name string
		cfg  *hfconfig.Config
		opts ConvertOptions
		want string
	}{
		{"pattern matching no weight", tiny, ConvertOptions{Mix: mix, TensorTypes: overrides(t, "ffn_dwn=q8_0")}, "--tensor-type ffn_dwn=Q8_0: the pattern matches none of the model's 2-D weights"},
		{"pattern matching only norms", tiny, ConvertOptions{Mix: mix, TensorTypes: overrides(t, "_norm=q8_0")}, "--tensor-type _norm=Q8_0: the pattern matches none"},
		{"bad pattern", tiny, ConvertOptions{Mix: mix, TensorTypes: []TensorTypeOverride{{Pattern: "(ffn", Type: TypeQ8_0}}}, "--tensor-type (ffn=Q8_0: pattern: error parsing regexp: missing closing )"},
		{"type not written", tiny, ConvertOptions{Mix: mix, TensorTypes: []TensorTypeOverride{{Pattern: "ffn", Type: TypeTQ1_0}}}, "--tensor-type ffn=TQ1_0: type TQ1_0: want F32, F16"},
		{"leave output of a tied model", tiny, ConvertOptions{Mix: mix, LeaveOutput: true}, "--leave-output-tensor: " + tiny.File + " ties the output to token_embd.weight"},
		{"leave output with an output type", stories, ConvertOptions{Mix: mix, LeaveOutput: true, OutputType: &q8}, "--leave-output-tensor leaves output.weight unquantized, --output-tensor-type Q8_0"},
		{"include and exclude", tiny, ConvertOptions{Mix: mix, Imatrix: fakeImatrix(tiny), IncludeWeights: []string{"attn"}, ExcludeWeights: []string{"ffn"}}, "--include-weights attn and --exclude-weights ffn: use one of them"},
		{"include without an importance matrix", tiny, ConvertOptions{Mix: mix, IncludeWeights: []string{"attn"}}, "--include-weights attn selects the importance matrix's entries: add --imatrix"},
		{"exclude naming no entry", tiny, ConvertOptions{Mix: mix, Imatrix: fakeImatrix(tiny), ExcludeWeights: []string{"ffn", "lm_head"}}, "--exclude-weights lm_head: no entry of the importance matrix has it in its name (its entries: blk.0.attn_k.weight, blk.0.attn_output.weight, blk.0.attn_q.weight, …)"},
		// Q2_K_S needs an entry for each Q2_K weight; --pure makes every
		// weight but ffn_down (Q4_0 fallback) Q2_K, the excluded too.
		{"q2_k_s --pure without attn_q's entries", tiny, ConvertOptions{Mix: mustMix(t, "q2_k_s"), Pure: true, Imatrix: fakeImatrix(tiny), ExcludeWeights: []string{"attn_q"}}, "Q2_K_S needs the importance matrix's entry for each Q2_K weight: none for blk.0.attn_q.weight, blk.1.attn_q.weight"},
		// Every entry left out: the matrix was given, so the error names
		// the flag that emptied it, not --imatrix.
		{"iq3_xs without any entry", tiny, ConvertOptions{Mix: mustMix(t, "iq3_xs"), Imatrix: fakeImatrix(tiny), ExcludeWeights: []string{"blk."}}, "IQ3_XS needs the importance matrix's entry for each IQ3_XXS weight, as llama-quantize does: --exclude-weights blk. leaves it none"},
		{"iq3_xs with include", tiny, ConvertOptions{Mix: mustMix(t, "iq3_xs"), Imatrix: fakeImatrix(tiny), IncludeWeights: []string{"attn_q"}}, "blk.5.attn_k.weight (after --include-weights attn_q)"},
	} {
		if err := Check(tc.cfg, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
