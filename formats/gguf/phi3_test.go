package gguf_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// phi3Vocab is Phi-3-mini's vocab_size: Llama's 32000 SentencePiece
// pieces, its added tokens from 32000 and [PADn] ids up to 32064.
const phi3Vocab = 32064

// phi3AddedTokens are Phi-3-mini-4k-instruct's added tokens as its
// tokenizer.json and tokenizer_config.json list them (id: content,
// special): </s> not special, as there; <|placeholder1|> made not special
// here, so that Phi3MiniModel's typing (user-defined) differs from
// LlamaModel's (control: it looks special).
var phi3AddedTokens = []struct {
	id      int
	content string
	special bool
}{
	{0, "<unk>", true}, {1, "<s>", true}, {2, "</s>", false},
	{32000, "<|endoftext|>", true}, {32001, "<|assistant|>", true}, {32002, "<|placeholder1|>", false},
	{32006, "<|system|>", true}, {32007, "<|end|>", true}, {32010, "<|user|>", true},
}

// phi3TokenizerDir writes a Phi-3-style tokenizer: Mistral-7B v0.1's
// tokenizer.model and tokenizer.json (Llama's SentencePiece vocabulary of
// 32000 pieces) with phi3AddedTokens in tokenizer.json's added_tokens and
// tokenizer_config.json's added_tokens_decoder, and Phi-3's special tokens
// (eos and pad <|endoftext|>, add_bos_token false) and a chat template.
func phi3TokenizerDir(t *testing.T) string {
	t.Helper()
	src := fixture(t, filepath.Join("tokenizers", "mistral-7b-v0.1"))
	dir := t.TempDir()
	model, err := os.ReadFile(filepath.Join(src, "tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.model"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	var tj map[string]any
	readJSON(t, filepath.Join(src, "tokenizer.json"), &tj)
	var added []any
	decoder := map[string]any{}
	for _, a := range phi3AddedTokens {
		e := map[string]any{"id": a.id, "content": a.content, "single_word": false, "lstrip": false, "rstrip": a.id >= 32000,
			"normalized": false, "special": a.special}
		added = append(added, e)
		d := map[string]any{}
		for k, v := range e {
			if k != "id" {
				d[k] = v
			}
		}
		decoder[strconv.Itoa(a.id)] = d
	}
	tj["added_tokens"] = added
	writeJSON(t, filepath.Join(dir, "tokenizer.json"), tj)
	writeJSON(t, filepath.Join(dir, "tokenizer_config.json"), map[string]any{
		"add_bos_token": false, "add_eos_token": false, "added_tokens_decoder": decoder,
		"bos_token": "<s>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<unk>",
		"chat_template":   "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}{% endfor %}",
		"legacy":          false,
		"tokenizer_class": "LlamaTokenizer", "model_max_length": 4096, "clean_up_tokenization_spaces": false,
	})
	return dir
}

// phi3Checkpoint writes a random-weight Phi-3 checkpoint (fixtures.Phi3,
// fp32: fused qkv_proj and gate_up_proj) with vocab 32064 and
// phi3TokenizerDir's tokenizer, the keys of edit set.
func phi3Checkpoint(t *testing.T, tokDir string, edit map[string]any) *checkpoint {
	t.Helper()
	e := map[string]any{"vocab_size": phi3Vocab}
	for k, v := range edit {
		e[k] = v
	}
	dir := fixtures.Phi3(t, e, synth.Options{DType: "f32", Seed: 11, TokenizerDir: tokDir})
	return openCheckpointDir(t, dir)
}

// phi3Factors are longrope factors for head_dim 16 (8 of each), exact in
// float32 so that the file's F32 factors are the config's: short near 1,
// long growing to 8, as Phi-3.5's do.
var (
	phi3Short = []float64{1, 1, 1.125, 1.25, 1.5, 1.75, 2, 2.5}
	phi3Long  = []float64{1, 1.25, 1.5, 2, 3, 4, 6, 8}
)

// phi3Longrope is a longrope rope_scaling of phi3Short and phi3Long.
func phi3Longrope() map[string]any {
	return map[string]any{"type": "longrope", "short_factor": phi3Short, "long_factor": phi3Long}
}

// phi3ShortP and phi3LongP are longrope factors for partial RoPE over 12
// of head_dim 16 (partial_rotary_factor 0.75, Phi-4-mini's): 6 of each,
// exact in float32.
var (
	phi3ShortP = []float64{1, 1.125, 1.25, 1.5, 2, 2.5}
	phi3LongP  = []float64{1, 1.5, 2, 3, 4, 8}
)

// phi3Partial is Phi-4-mini's shape of RoPE on the test checkpoints:
// partial_rotary_factor 0.75 (12 of 16 channels rotated) and a longrope
// scaling of phi3ShortP and phi3LongP past an original context of 64.
func phi3Partial() map[string]any {
	return map[string]any{"partial_rotary_factor": 0.75, "original_max_position_embeddings": 64,
		"rope_scaling": map[string]any{"type": "longrope", "short_factor": phi3ShortP, "long_factor": phi3LongP}}
}

// convertPhi3 converts ck to typ with Phi3SentencePieceVocab's vocabulary
// (what publish passes for a phi3 checkpoint with tokenizer.model).
func convertPhi3(t *testing.T, ck *checkpoint, typ gguf.TensorType) *converted {
	t.Helper()
	vocab, err := gguf.Phi3SentencePieceVocab(ck.dir, ck.cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	return convertWith(t, ck, typ, gguf.ConvertOptions{Type: typ, Vocab: vocab})
}

// TestConvertPhi3Keys converts Phi-3 checkpoints (no scaling with a
// window of 16; longrope past an original context of 64) and compares
// every metadata key with what convert_hf_to_gguf.py's Phi3MiniModel
// writes for them (read from llama.cpp's conversion/phi.py, the version
// node-llama-cpp 3.21.1 bundles): set_gguf_parameters' phi3.* keys, no
// vocab_size, key_length or value_length; generate_extra_tensors'
// rope.scaling.attn_factor sqrt(1 + ln(512/64)/ln 64) and the
// rope_factors_long/short tensors only with longrope; set_vocab's
// tokenizer (model llama, pre default, pieces and scores of
// tokenizer.model, added tokens scored -1000 and typed by their special
// flag, [PADn] scored -10000) and SpecialVocab's ids, add_bos/add_eos and
// chat template, no add_space_prefix. The tensors are the converter's:
// attn_qkv and ffn_up the checkpoint's fused tensors as they are.
func TestConvertPhi3Keys(t *testing.T) {
	tokDir := phi3TokenizerDir(t)
	pieces := readModelProto(t, filepath.Join(tokDir, "tokenizer.model"))
	for _, tc := range []struct {
		name string
		edit map[string]any
		keys map[string]any
	}{
		{"window", map[string]any{"sliding_window": 16}, map[string]any{
			"phi3.attention.sliding_window": uint32(16), "phi3.rope.scaling.original_context_length": uint32(512),
		}},
		{"longrope", map[string]any{"rope_scaling": phi3Longrope(), "original_max_position_embeddings": 64}, map[string]any{
			"phi3.attention.sliding_window": uint32(0), "phi3.rope.scaling.original_context_length": uint32(64),
			"phi3.rope.scaling.attn_factor": float32(math.Sqrt(1 + math.Log(512.0/64)/math.Log(64))),
		}},
		// Phi-4-mini's partial RoPE: Phi3MiniModel writes
		// rope.dimension_count int(0.75·64)/4 = 12 and factor tensors of 6.
		{"longrope partial", phi3Partial(), map[string]any{
			"phi3.attention.sliding_window": uint32(0), "phi3.rope.scaling.original_context_length": uint32(64),
			"phi3.rope.scaling.attn_factor": float32(math.Sqrt(1 + math.Log(512.0/64)/math.Log(64))),
			"phi3.rope.dimension_count":     uint32(12),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck := phi3Checkpoint(t, tokDir, tc.edit)
			c := convertPhi3(t, ck, gguf.TypeF16)
			want := map[string]any{
				"general.architecture": "phi3", "general.type": "model", "general.name": filepath.Base(ck.dir),
				"general.file_type": uint32(1), "general.quantization_version": uint32(2),
				"phi3.context_length": uint32(512), "phi3.embedding_length": uint32(64), "phi3.feed_forward_length": uint32(96),
				"phi3.block_count": uint32(2), "phi3.attention.head_count": uint32(4), "phi3.attention.head_count_kv": uint32(2),
				"phi3.attention.layer_norm_rms_epsilon": float32(1e-5), "phi3.rope.dimension_count": uint32(16),
				"phi3.rope.freq_base":  float32(10000),
				"tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
				"tokenizer.ggml.bos_token_id": uint32(1), "tokenizer.ggml.eos_token_id": uint32(32000),
				"tokenizer.ggml.unknown_token_id": uint32(0), "tokenizer.ggml.padding_token_id": uint32(32000),
				"tokenizer.ggml.add_bos_token": false, "tokenizer.ggml.add_eos_token": false,
				"tokenizer.chat_template": ck.tok.ChatTemplate(),
			}
			for k, v := range tc.keys {
				want[k] = v
			}
			arrays := []string{"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"}
			var got []string
			for _, kv := range c.file.KVs() {
				got = append(got, kv.Key)
				if slices.Contains(arrays, kv.Key) {
					continue
				}
				w, ok := want[kv.Key]
				if !ok {
					t.Errorf("key %s = %v: the converter writes no such key", kv.Key, kv.Value)
				} else if kv.Value != w {
					t.Errorf("key %s = %v (%T), want %v (%T)", kv.Key, kv.Value, kv.Value, w, w)
				}
			}
			for k := range want {
				if !slices.Contains(got, k) {
					t.Errorf("key %s missing", k)
				}
			}
			for _, k := range arrays {
				if !slices.Contains(got, k) {
					t.Errorf("key %s missing", k)
				}
			}
			// Phi3MiniModel.set_vocab's vocabulary, id by id.
			tokens, err := gguf.Value[[]string](c.file, "tokenizer.ggml.tokens")
			if err != nil {
				t.Fatal(err)
			}
			scores, _ := gguf.Value[[]float32](c.file, "tokenizer.ggml.scores")
			types, _ := gguf.Value[[]int32](c.file, "tokenizer.ggml.token_type")
			if len(tokens) != phi3Vocab || len(scores) != phi3Vocab || len(types) != phi3Vocab {
				t.Fatalf("%d tokens, %d scores, %d types, want %d", len(tokens), len(scores), len(types), phi3Vocab)
			}
			added := map[int]bool{}
			for _, a := range phi3AddedTokens {
				added[a.id] = true
				typ := int32(tokenizer.TokenTypeUserDefined)
				if a.special {
					typ = int32(tokenizer.TokenTypeControl)
				}
				if tokens[a.id] != a.content || scores[a.id] != -1000 || types[a.id] != typ {
					t.Errorf("id %d: %q score %g type %d, want %q -1000 %d", a.id, tokens[a.id], scores[a.id], types[a.id], a.content, typ)
				}
			}
			for id := range phi3Vocab {
				if added[id] {
					continue
				}
				wantTok, wantScore, wantType := "[PAD"+strconv.Itoa(id)+"]", float32(-10000), int32(tokenizer.TokenTypeUnused)
				if id < len(pieces) {
					p := pieces[id]
					wantTok, wantScore, wantType = p.piece, p.score, p.typ
				}
				if tokens[id] != wantTok || scores[id] != wantScore || types[id] != wantType {
					t.Fatalf("id %d: %q score %g type %d, want %q %g %d", id, tokens[id], scores[id], types[id], wantTok, wantScore, wantType)
				}
			}
			// The tensors: names, shapes, order.
			var names []string
			for _, ti := range c.file.Tensors() {
				names = append(names, ti.Name)
			}
			var wantNames []string
			if tc.name != "window" {
				wantNames = append(wantNames, "rope_factors_long.weight", "rope_factors_short.weight")
			}
			wantNames = append(wantNames, "token_embd.weight")
			for _, b := range []string{"blk.0.", "blk.1."} {
				for _, n := range []string{"attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"} {
					wantNames = append(wantNames, b+n+".weight")
				}
			}
			wantNames = append(wantNames, "output_norm.weight", "output.weight")
			if !slices.Equal(names, wantNames) {
				t.Errorf("tensors %v\nwant %v", names, wantNames)
			}
			for name, src := range map[string]string{"blk.1.attn_qkv.weight": "model.layers.1.self_attn.qkv_proj.weight", "blk.0.ffn_up.weight": "model.layers.0.mlp.gate_up_proj.weight"} {
				checkSameAsF16(t, c, name, ck, src)
			}
			if tc.name != "window" {
				factors := map[string][]float64{"rope_factors_long.weight": phi3Long, "rope_factors_short.weight": phi3Short}
				if tc.name == "longrope partial" {
					factors = map[string][]float64{"rope_factors_long.weight": phi3LongP, "rope_factors_short.weight": phi3ShortP}
				}
				for name, want := range factors {
					got, err := c.file.Float32(name)
					if err != nil {
						t.Fatal(err)
					}
					ti, _ := c.file.Tensor(name)
					if ti.Type != gguf.TypeF32 || len(got) != len(want) {
						t.Fatalf("%s: %s %d values, want F32 %d", name, ti.Type, len(got), len(want))
					}
					for i := range want {
						if float64(got[i]) != want[i] {
							t.Errorf("%s[%d] = %g, want %g", name, i, got[i], want[i])
						}
					}
				}
			}
		})
	}
}

// checkSameAsF16 checks that the F16 file's tensor name holds the
// checkpoint's tensor src, rounded to fp16, element by element.
func checkSameAsF16(t *testing.T, c *converted, name string, ck *checkpoint, src string) {
	t.Helper()
	ti, ok := c.file.Tensor(name)
	st, err := ck.set.Tensor(src)
	if err != nil {
		t.Fatal(err)
	}
	if !ok || !slices.Equal(ti.Shape, st.Shape) {
		t.Fatalf("%s: %+v, want shape %v (%s)", name, ti, st.Shape, src)
	}
	got, err := c.file.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := st.Float32()
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-3*math.Max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("%s[%d] = %g, %s's %g", name, i, got[i], src, want[i])
		}
	}
}

// TestConvertPhi3ReadBack: File.HFConfig reads a phi3 file back as the
// phi3 config it came from (sliding window; longrope's factors, original
// context and attention factor; Long as the source's), and the runtime on
// File.Weights (the fused attn_qkv and ffn_up read as their parts) gives
// the logits of the runtime on the source checkpoint: exactly for an F32
// file without scaling, within float32's rounding of the attention factor
// with longrope.
func TestConvertPhi3ReadBack(t *testing.T) {
	tokDir := phi3TokenizerDir(t)
	for _, tc := range []struct {
		name string
		edit map[string]any
		tol  tolerance
	}{
		{"window", map[string]any{"sliding_window": 4}, tolerance{0, 0, 0}},
		{"longrope long", map[string]any{"rope_scaling": phi3Longrope(), "original_max_position_embeddings": 64}, tolerance{1e-4, 1e-10, 1e-10}},
		{"longrope short", map[string]any{"rope_scaling": phi3Longrope()}, tolerance{0, 0, 0}},
		{"longrope partial", phi3Partial(), tolerance{1e-4, 1e-10, 1e-10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck := phi3Checkpoint(t, tokDir, tc.edit)
			c := convertPhi3(t, ck, gguf.TypeF32)
			hc, err := c.file.HFConfig()
			if err != nil {
				t.Fatal(err)
			}
			if hc.ModelType != "phi3" || !slices.Equal(hc.Architectures, []string{"Phi3ForCausalLM"}) || hc.SlidingWindow != ck.cfg.SlidingWindow ||
				hc.HeadDim != 16 || hc.NumKeyValueHeads != 2 || hc.TieWordEmbeddings || hc.MaxPositionEmbeddings != 512 {
				t.Errorf("HFConfig: %s %v, window %d (want %d), head_dim %d, kv heads %d, tied %v, max positions %d",
					hc.ModelType, hc.Architectures, hc.SlidingWindow, ck.cfg.SlidingWindow, hc.HeadDim, hc.NumKeyValueHeads, hc.TieWordEmbeddings, hc.MaxPositionEmbeddings)
			}
			if hc.RoPEDim() != ck.cfg.RoPEDim() {
				t.Errorf("HFConfig: %d rotary dimensions, want %d", hc.RoPEDim(), ck.cfg.RoPEDim())
			}
			got, want := hc.RopeScaling, ck.cfg.RopeScaling
			if d := math.Abs(got.AttentionFactor - want.AttentionFactor); want.AttentionFactor != 0 && d > 1e-7*want.AttentionFactor {
				t.Errorf("attention factor %v, want %v within float32's step", got.AttentionFactor, want.AttentionFactor)
			}
			got.AttentionFactor, got.Factor = want.AttentionFactor, want.Factor
			if got.Type != want.Type || got.Long != want.Long || got.OriginalMaxPositionEmbeddings != want.OriginalMaxPositionEmbeddings ||
				!slices.Equal(got.ShortFactor, want.ShortFactor) || !slices.Equal(got.LongFactor, want.LongFactor) {
				t.Errorf("read back %+v, want %+v", got, want)
			}
			prompts := phi3Prompts(t, ck.tok, 24)
			src := loadRuntime(t, fusedView(t, ck.set, ck.cfg), ck.cfg)
			d := compareAll(nextLogProbs(t, loadRuntime(t, c.file.Weights(hc), hc), prompts), nextLogProbs(t, src, prompts))
			t.Logf("F32 file read back vs the checkpoint: %v", d)
			tc.tol.check(t, "the F32 file read back vs the checkpoint", d)
		})
	}
}

// phi3Prompts are prompts of the tokenizer's ids (no BOS: Phi-3 adds
// none) of up to n tokens, the longest n.
func phi3Prompts(t *testing.T, tok *tokenizer.Tokenizer, n int) [][]int {
	t.Helper()
	ids, err := tok.Encode(strings.Repeat("Once upon a time, in a land far away, there lived a small fox who liked to count the stars. ", 8))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < n {
		t.Fatalf("%d ids, want %d", len(ids), n)
	}
	return [][]int{ids[:3], ids[:n/2+1], ids[:n]}
}

// TestPhi3Refused: a fused tensor of other rows than the config gives is
// refused naming the tensor, converting (qkv_proj) and reading a file
// back (attn_qkv, ffn_up), as are yarn keys on a phi3 file and an
// override of phi3's sizes; a
// llama-quantize file type types attn_qkv as attn_v; a float phi3 checkpoint read through
// package fused (the parts) converts to the same file as its fused
// tensors.
func TestPhi3Refused(t *testing.T) {
	tokDir := phi3TokenizerDir(t)
	ck := phi3Checkpoint(t, tokDir, map[string]any{"rope_scaling": phi3Longrope(), "original_max_position_embeddings": 64})
	c := convertPhi3(t, ck, gguf.TypeF32)

	t.Run("convert", func(t *testing.T) {
		bad := *ck
		cfg := *ck.cfg
		cfg.NumKeyValueHeads = 4 // qkv_proj then holds 64+2·64 rows, the checkpoint 128
		bad.cfg = &cfg
		_, err := gguf.FromCheckpoint(filepath.Join(t.TempDir(), "bad.gguf"), bad.set, bad.cfg, bad.tok, gguf.ConvertOptions{Type: gguf.TypeF32})
		want := `tensor "model.layers.0.self_attn.qkv_proj.weight": shape [128 64]`
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "implies [192 64] (q_proj's 64 rows, then k_proj's 64 rows, then v_proj's 64 rows)") {
			t.Errorf("err = %v, want %q and the rows", err, want)
		}
	})
	t.Run("read back", func(t *testing.T) {
		for _, tc := range []struct{ edit map[string]any }{
			{map[string]any{"phi3.attention.head_count_kv": uint32(4)}},
			{map[string]any{"phi3.feed_forward_length": uint32(64)}},
		} {
			_, err := rewriteGGUF(t, c, tc.edit).HFConfig()
			if err == nil || !(strings.Contains(err.Error(), `tensor "blk.0.attn_qkv.weight": shape [128 64], want [192 64]`) ||
				strings.Contains(err.Error(), `tensor "blk.0.ffn_up.weight": shape [192 64], want [128 64]`)) {
				t.Errorf("%v: err = %v, want the fused tensor named", tc.edit, err)
			}
		}
		_, err := rewriteGGUF(t, c, map[string]any{"phi3.rope.scaling.type": "yarn"}).HFConfig()
		if err == nil || !errors.Is(err, gguf.ErrUnsupportedModel) {
			t.Errorf("yarn keys on a phi3 file: err = %v, want ErrUnsupportedModel", err)
		}
	})
	t.Run("mix", func(t *testing.T) {
		// llama-quantize types attn_qkv by attn_v's rules
		// (category_is_attn_v): Q4_K_M's use_more_bits gives the last of
		// 2 layers Q6_K (Q8_0 here: rows of 64 are no whole Q6_K block),
		// the first the base Q4_K (Q5_0).
		target, err := gguf.ParseTarget("q4_k_m")
		if err != nil {
			t.Fatal(err)
		}
		res, err := gguf.Plan(ck.cfg, ck.tok, gguf.ConvertOptions{Mix: target.Mix})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]gguf.TensorType{"blk.0.attn_qkv.weight": gguf.TypeQ5_0, "blk.1.attn_qkv.weight": gguf.TypeQ8_0, "blk.1.ffn_up.weight": gguf.TypeQ5_0}
		for _, ct := range res.Tensors {
			if w, ok := want[ct.Name]; ok && ct.Type != w {
				t.Errorf("Q4_K_M: %s in %s, want %s", ct.Name, ct.Type, w)
			}
		}
	})
	t.Run("override", func(t *testing.T) {
		_, err := gguf.ParseKVOverride("phi3.feed_forward_length=int:64")
		if err == nil || !strings.Contains(err.Error(), "cannot be overridden") {
			t.Errorf("overriding phi3.feed_forward_length: %v, want it refused", err)
		}
		kv := gguf.KV{Key: "phi3.attention.head_count_kv", Value: uint32(4)}
		_, err = gguf.Plan(ck.cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF32, KVOverrides: []gguf.KV{kv}})
		if err == nil || !strings.Contains(err.Error(), "cannot be overridden") {
			t.Errorf("Plan overriding phi3.attention.head_count_kv: %v, want it refused", err)
		}
	})
	t.Run("parts", func(t *testing.T) {
		fv := fusedView(t, ck.set, ck.cfg)
		if _, err := fv.Tensor("model.layers.0.self_attn.qkv_proj.weight"); err == nil {
			t.Fatal("the fused view gives qkv_proj: the test reads the fused tensors")
		}
		vocab, _ := gguf.Phi3SentencePieceVocab(ck.dir, ck.cfg.VocabSize)
		path := filepath.Join(t.TempDir(), "parts.gguf")
		if _, err := gguf.FromCheckpoint(path, fv, ck.cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF32, Vocab: vocab}); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, ti := range c.file.Tensors() {
			a, _ := c.file.TensorData(ti.Name)
			b, err := f.TensorData(ti.Name)
			if err != nil || !slices.Equal(a, b) {
				t.Errorf("tensor %s differs from the parts (%v)", ti.Name, err)
			}
		}
	})
}

// TestLlamaCppPhi3 loads phi3 GGUF files in llama.cpp (node-llama-cpp)
// and compares its next-token log-probabilities with our runtime on the
// same weights, as TestLlamaCppQwen2 does, for a phi3 of a sliding window
// of 16 on prompts of up to 16 tokens (within it): llama.cpp's phi3 graph
// splits attn_qkv into q, k, v and runs ffn_up as silu(first half) times
// the second; our runtime with gate_proj and up_proj swapped is far off.
// A prompt of 40 tokens (past the window) shows what the converter warns
// of: llama.cpp disables phi3's window, so it matches our runtime without
// the window, and is far from it with the window.
func TestLlamaCppPhi3(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := phi3Checkpoint(t, phi3TokenizerDir(t), map[string]any{"sliding_window": 16})
	prompts := phi3Prompts(t, ck.tok, 16)
	llamaCppMatches(t, node, ck, prompts, swapGateUp{fusedView(t, ck.set, ck.cfg)}, "gate/up order")

	t.Run("past the window", func(t *testing.T) {
		long := [][]int{phi3Prompts(t, ck.tok, 40)[2]}
		c := convertPhi3(t, ck, gguf.TypeF32)
		if len(c.res.Warnings) == 0 || !strings.Contains(c.res.Warnings[0], "llama.cpp's phi3 architecture disables the window") {
			t.Errorf("warnings %q, want the window's", c.res.Warnings)
		}
		resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{Path: c.path, Context: 64, Logits: long}}})
		tol := llamaTolerances[gguf.TypeF32]
		noWindow := *ck.cfg
		noWindow.SlidingWindow = 0
		d := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, loadRuntime(t, fusedView(t, ck.set, &noWindow), &noWindow), long), ck.cfg.VocabSize)
		t.Logf("llama.cpp vs our runtime without the window: %v", d)
		tol.check(t, "llama.cpp vs our runtime without the window", d)
		u := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, loadRuntime(t, fusedView(t, ck.set, ck.cfg), ck.cfg), long), ck.cfg.VocabSize)
		t.Logf("llama.cpp vs our runtime with the window: %v", u)
		if u.maxAbs <= tol.maxAbs && u.nmse <= tol.nmse {
			t.Errorf("the window is within the tolerance too (%v): the check cannot tell it", u)
		}
	})
}

// TestLlamaCppPhi3Longrope: llama.cpp runs phi3 files of a longrope
// scaling as our runtime runs the checkpoint, F32, F16 and Q8_0. Both
// must take the same factors: our runtime takes the long ones where
// max_position_embeddings (512) > original_max_position_embeddings,
// llama.cpp where its context per sequence exceeds
// rope.scaling.original_context_length, and it pads the context to a
// multiple of 256. So "long" (original 64) runs llama.cpp at context 96,
// padded to 256 > 64: the long factors and attention factor
// sqrt(1 + ln 8/ln 64); "short" (original 512 = max positions) at 96,
// padded to 256 <= 512: the short factors and attention factor 1. Our
// runtime on the other factors, or without the attention factor, is far
// off.
func TestLlamaCppPhi3Longrope(t *testing.T) {
	node := llamaCppAvailable(t)
	tokDir := phi3TokenizerDir(t)
	long := phi3Checkpoint(t, tokDir, map[string]any{"rope_scaling": phi3Longrope(), "original_max_position_embeddings": 64})
	prompts := phi3Prompts(t, long.tok, 60)
	if !long.cfg.RopeScaling.Long {
		t.Fatalf("%s: the runtime takes the short factors", long.cfg.RopeScaling)
	}
	llamaCppMatches(t, node, long, prompts, nil, "")

	short := phi3Checkpoint(t, tokDir, map[string]any{"rope_scaling": phi3Longrope()})
	if short.cfg.RopeScaling.Long || short.cfg.RopeScaling.AttentionFactor != 1 {
		t.Fatalf("%s: want the short factors, attention factor 1", short.cfg.RopeScaling)
	}
	req := llamaRequest{}
	for _, ck := range []*checkpoint{long, short} {
		c := convertPhi3(t, ck, gguf.TypeF32)
		req.Models = append(req.Models, llamaModel{Path: c.path, Context: 96, Logits: prompts})
	}
	resp := runLlamaCpp(t, node, req)
	tol := llamaTolerances[gguf.TypeF32]
	// The runtime chooses the table by the context it loads the model for
	// (max_position_embeddings here), not by the Long it is given: the
	// other table comes from moving the original context across it (the
	// attention factor, resolved at parse, stays).
	run := func(ck *checkpoint, edit func(*hfconfig.RopeScaling)) [][]float64 {
		cfg := *ck.cfg
		if edit != nil {
			edit(&cfg.RopeScaling)
		}
		return nextLogProbs(t, loadRuntime(t, fusedView(t, ck.set, &cfg), &cfg), prompts)
	}
	for i, tc := range []struct {
		name   string
		ck     *checkpoint
		others map[string]func(*hfconfig.RopeScaling)
	}{
		{"long", long, map[string]func(*hfconfig.RopeScaling){
			"the short factors":   func(s *hfconfig.RopeScaling) { s.OriginalMaxPositionEmbeddings = 512 },
			"no attention factor": func(s *hfconfig.RopeScaling) { s.AttentionFactor = 1 },
		}},
		{"short", short, map[string]func(*hfconfig.RopeScaling){
			"the long factors": func(s *hfconfig.RopeScaling) { s.OriginalMaxPositionEmbeddings = 64 },
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := llamaDiff(t, resp.Models[i].LogProbs, run(tc.ck, nil), tc.ck.cfg.VocabSize)
			t.Logf("llama.cpp vs our runtime: %v", d)
			tol.check(t, "llama.cpp vs our runtime", d)
			for what, edit := range tc.others {
				u := llamaDiff(t, resp.Models[i].LogProbs, run(tc.ck, edit), tc.ck.cfg.VocabSize)
				t.Logf("llama.cpp vs our runtime with %s: %v", what, u)
				if u.maxAbs <= tol.maxAbs && u.nmse <= tol.nmse {
					t.Errorf("our runtime with %s is within the tolerance too (%v): the check cannot tell it", what, u)
				}
			}
		})
	}
}

// TestLlamaCppPhi3Partial: Phi-4-mini's partial RoPE (phi3Partial: 12 of
// head_dim 16 rotated, longrope's long factors and attention factor past
// an original context of 64) converted to F32, F16 and Q8_0 runs in
// llama.cpp (phi3.rope.dimension_count 12, its n_rot: ggml_rope_ext
// rotates the first 12 channels by halves of them, copies the rest, the
// attention factor on the rotated ones) as our runtime runs the
// checkpoint, within llamaCppMatches' tolerances. Our runtime rotating
// whole heads, rotating 8 of the channels or without the attention
// factor is far off.
func TestLlamaCppPhi3Partial(t *testing.T) {
	node := llamaCppAvailable(t)
	tokDir := phi3TokenizerDir(t)
	ck := phi3Checkpoint(t, tokDir, phi3Partial())
	if ck.cfg.RoPEDim() != 12 || !ck.cfg.RopeScaling.Long || ck.cfg.RopeScaling.AttentionFactor == 1 {
		t.Fatalf("rotary dimension %d, %s: want 12, the long factors and an attention factor", ck.cfg.RoPEDim(), ck.cfg.RopeScaling)
	}
	prompts := phi3Prompts(t, ck.tok, 60)
	llamaCppMatches(t, node, ck, prompts, nil, "")

	c := convertPhi3(t, ck, gguf.TypeF32)
	resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{Path: c.path, Context: 96, Logits: prompts}}})
	tol := llamaTolerances[gguf.TypeF32]
	for what, edit := range map[string]func(*hfconfig.Config){
		// Whole heads rotated: the plain table over 16 (longrope's
		// factors have no entries for the other pairs).
		"whole heads rotated": func(c *hfconfig.Config) {
			c.RotaryDim, c.RopeScaling = 16, hfconfig.RopeScaling{Type: hfconfig.RopeDefault}
		},
		"no attention factor": func(c *hfconfig.Config) { c.RopeScaling.AttentionFactor = 1 },
		"rotated over 8 of them": func(c *hfconfig.Config) {
			c.RotaryDim = 8
			c.RopeScaling.LongFactor = c.RopeScaling.LongFactor[:4]
			c.RopeScaling.ShortFactor = c.RopeScaling.ShortFactor[:4]
		},
	} {
		cfg := *ck.cfg
		edit(&cfg)
		u := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, loadRuntime(t, fusedView(t, ck.set, &cfg), &cfg), prompts), cfg.VocabSize)
		t.Logf("llama.cpp vs our runtime with %s: %v", what, u)
		if u.maxAbs <= tol.maxAbs && u.nmse <= tol.nmse {
			t.Errorf("our runtime with %s is within the tolerance too (%v): the check cannot tell it", what, u)
		}
	}
}

// TestLlamaCppPhi3GPTQ: a GPTQ phi3 checkpoint (act order; fused
// qkv_proj and gate_up_proj modules) converted to GGUF F32 as convert
// --gguf does (publish.Convert: each part dequantized, the parts stacked
// into attn_qkv and ffn_up) runs in llama.cpp as our runtime runs the GPTQ
// checkpoint, within llamaCppMatches' F32 tolerance; our runtime on the
// float weights before quantization is far from llama.cpp's (the check
// tells the GPTQ weights from the float ones). (llamaCppMatches itself
// converts float checkpoints; the read-back logits of the F32 and F16
// files: publish's TestConvertPhi3GPTQToGGUF.)
func TestLlamaCppPhi3GPTQ(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := phi3Checkpoint(t, phi3TokenizerDir(t), nil)
	prompts := phi3Prompts(t, ck.tok, 40)
	var samples []quantize.Sample
	for i := range 4 {
		ids, err := ck.tok.Encode(strings.Repeat("The quick brown fox jumps over the lazy dog, number "+strconv.Itoa(i)+". ", 8))
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, quantize.Sample{IDs: ids[:64]})
	}
	q := filepath.Join(t.TempDir(), "q")
	if _, err := publish.Quantize(context.Background(), publish.RunOptions{ModelDir: ck.dir, Out: q, Sym: true, TrueSequential: true,
		Branches: []publish.Branch{{Name: "main", Bits: 4, GroupSize: 32, DescAct: true, Damp: 0.1}},
		Samples:  samples, SeqLen: 64, Backend: cpu.New(0)}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "phi3-gptq-f32.gguf")
	if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: q, Out: path, GGUF: "f32"}); err != nil {
		t.Fatal(err)
	}
	resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{Path: path, Context: 64, Logits: prompts}}})
	t.Logf("llama.cpp %s", resp.LlamaCpp)
	m, err := model.Load(q, cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tol := llamaTolerances[gguf.TypeF32]
	d := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, m, prompts), ck.cfg.VocabSize)
	t.Logf("llama.cpp vs our runtime on the GPTQ checkpoint: %v", d)
	tol.check(t, "llama.cpp vs our runtime on the GPTQ checkpoint", d)
	u := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, loadRuntime(t, fusedView(t, ck.set, ck.cfg), ck.cfg), prompts), ck.cfg.VocabSize)
	t.Logf("llama.cpp vs our runtime on the float weights: %v", u)
	if !(u.nmse > 100*tol.nmse) {
		t.Errorf("llama.cpp's logits vs our runtime on the float weights before quantization: %v: the comparison cannot tell them", u)
	}
}

// swapGateUp serves a checkpoint's parts with gate_proj and up_proj
// swapped (ffn_up's halves in the other order).
type swapGateUp struct{ w model.Weights }

func (s swapGateUp) Tensor(name string) (safetensors.Tensor, error) {
	switch {
	case strings.HasSuffix(name, ".mlp.gate_proj.weight"):
		name = strings.TrimSuffix(name, "gate_proj.weight") + "up_proj.weight"
	case strings.HasSuffix(name, ".mlp.up_proj.weight"):
		name = strings.TrimSuffix(name, "up_proj.weight") + "gate_proj.weight"
	}
	return s.w.Tensor(name)
}
