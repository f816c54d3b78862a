package verify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/quantpack"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

// moeGPTQ is the GPTQ recipe of the mixture-of-experts fixtures: 4 bits,
// groups of 32, act order.
func moeGPTQ() *gptq.QuantizeConfig {
	q := gptq.DefaultQuantizeConfig()
	q.GroupSize = 32
	return &q
}

// failedChecks maps each failed check of r to its detail.
func failedChecks(r *verify.FormatReport) map[string]string {
	failed := map[string]string{}
	for _, c := range r.Checks {
		if !c.OK {
			failed[c.Name] = c.Detail
		}
	}
	return failed
}

// TestMoEFormatAndInspect checks small Mixtral, Qwen3-MoE, Qwen2-MoE and OLMoE
// checkpoints (the latter two with a dense layer), floating point and GPTQ,
// with Inspect and CheckFormat: no problem, every expert counted as a module
// (Mixtral: 2 layers of 4 attention Linears and 8·3 experts' = 56;
// Qwen3-MoE: 2 of 4 + 16·3, 1 dense of 7 = 111; Qwen2-MoE: 2 of 4 + 12·3
// + the shared expert's 3, 1 dense of 7 = 93; OLMoE: 2 of 4 + 10·3 =
// 68), the parameters held equal
// to the config's and the experts reported; then a GPTQ Mixtral missing an
// expert's qweight, and one with a router in fp32, fail the checks that
// name them.
func TestMoEFormatAndInspect(t *testing.T) {
	for _, tc := range []struct {
		name    string
		write   func(tb testing.TB, edit map[string]any, o synth.Options) string
		modules int
		moe     verify.MoE
	}{
		{"mixtral", fixtures.Mixtral, 56, verify.MoE{NumExperts: 8, NumExpertsPerTok: 2, MoEIntermediateSize: 96, NormTopKProb: true, SparseLayers: 2}},
		{"qwen3_moe", fixtures.Qwen3MoE, 111, verify.MoE{NumExperts: 16, NumExpertsPerTok: 4, MoEIntermediateSize: 48, NormTopKProb: true, SparseLayers: 2}},
		{"qwen2_moe", fixtures.Qwen2MoE, 93, verify.MoE{NumExperts: 12, NumExpertsPerTok: 4, MoEIntermediateSize: 48, SparseLayers: 2, SharedExpertIntermediateSize: 80}},
		{"olmoe", fixtures.Olmoe, 68, verify.MoE{NumExperts: 10, NumExpertsPerTok: 3, MoEIntermediateSize: 48, SparseLayers: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp := tc.write(t, nil, synth.Options{DType: "f32", Seed: 8})
			q := tc.write(t, nil, synth.Options{Seed: 9, GPTQ: moeGPTQ()})
			for _, dir := range []string{fp, q} {
				r, err := verify.Inspect(dir)
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Problems) != 0 || r.NumParameters != r.ConfigParameters || r.MoE == nil || *r.MoE != tc.moe {
					t.Errorf("%s: problems %v, parameters %d (config %d), experts %+v; want none, equal, %+v", dir, r.Problems, r.NumParameters, r.ConfigParameters, r.MoE, tc.moe)
				}
				if dir == q && (r.Quantization == nil || r.Quantization.QuantizedModules != tc.modules) {
					t.Errorf("GPTQ: quantization %+v, want %d modules", r.Quantization, tc.modules)
				}
			}
			r, err := verify.CheckFormat(q)
			if err != nil {
				t.Fatal(err)
			}
			if !r.OK {
				t.Errorf("CheckFormat: failed %v", failedChecks(r))
			}
			for _, c := range r.Checks {
				if c.Name == "quantized tensors: dtypes and shapes" && c.Detail != fmt.Sprintf("%d modules", tc.modules) {
					t.Errorf("%s: %q, want %d modules", c.Name, c.Detail, tc.modules)
				}
			}
		})
	}
	q := fixtures.Mixtral(t, nil, synth.Options{Seed: 9, GPTQ: moeGPTQ()})
	const expert, router = "model.layers.1.block_sparse_moe.experts.7.w2", "model.layers.0.block_sparse_moe.gate.weight"
	fixtures.RewriteTensors(t, q, func(tt *safetensors.Tensor) bool {
		if tt.Name == router {
			tt.DType, tt.Data = safetensors.F32, make([]byte, 2*len(tt.Data))
		}
		return tt.Name != expert+".qweight"
	})
	r, err := verify.CheckFormat(q)
	if err != nil {
		t.Fatal(err)
	}
	failed := failedChecks(r)
	if r.OK || !strings.Contains(failed["quantized tensors: dtypes and shapes"], expert+".qweight") ||
		!strings.Contains(failed["plain tensors (embedding, norms, routers, head) in fp16"], router) {
		t.Errorf("an expert's qweight missing, a router in fp32: failed checks %v", failed)
	}
}

// TestMoEForeignFormats reads AWQ and compressed-tensors checkpoints of a
// small Mixtral (quantpack's packers over model.QuantLinears, experts
// included) as GPTQ: CheckFormat and Inspect pass and count every expert;
// converted to GPTQ, each passes CheckFormat and gives the same logits.
// Their configs leave the routers (and lm_head) out as published Mixtral
// ones do (AWQ's modules_to_not_convert ["gate", "lm_head"],
// compressed-tensors' ignore of block_sparse_moe.gate).
func TestMoEForeignFormats(t *testing.T) {
	base := fixtures.Mixtral(t, nil, synth.Options{DType: "f16", Seed: 10})
	cfg, err := hfconfig.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	linears, err := model.QuantLinears(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// lm_head left unquantized, as AutoAWQ and llm-compressor leave it.
	if last := linears[len(linears)-1]; last.Name != "lm_head" {
		t.Fatalf("QuantLinears ends with %s, want lm_head", last.Name)
	}
	linears = linears[:len(linears)-1]
	awqDir := filepath.Join(t.TempDir(), "awq")
	quantpack.Write(t, base, awqDir, map[string]any{"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": true, "version": "gemm", "modules_to_not_convert": []string{"gate", "lm_head"}},
		nil, quantpack.Draw(1, linears, 4, 32, false, false), quantpack.AWQ)
	ctDir := filepath.Join(t.TempDir(), "ct")
	quantpack.Write(t, base, ctDir, map[string]any{"quant_method": "compressed-tensors", "format": "pack-quantized",
		"ignore": []string{"lm_head", "re:.*block_sparse_moe.gate$"}, "config_groups": map[string]any{"g": map[string]any{"targets": []string{"Linear"},
			"weights": map[string]any{"num_bits": 4, "symmetric": true, "strategy": "group", "group_size": 32, "actorder": "group"}}}},
		nil, quantpack.Draw(2, linears, 4, 32, true, true), func(m quantpack.Module) []safetensors.Tensor { return quantpack.Compressed(m, true) })
	for dir, method := range map[string]string{awqDir: "awq", ctDir: "compressed-tensors"} {
		r, err := verify.CheckFormat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK || r.Method != method {
			t.Errorf("%s: CheckFormat method %q, failed %v", method, r.Method, failedChecks(r))
		}
		ir, err := verify.Inspect(dir)
		if err != nil {
			t.Fatal(err)
		}
		if q := ir.Quantization; q == nil || q.QuantMethod != method || q.QuantizedModules != len(linears) || len(ir.Problems) != 0 {
			t.Errorf("%s: Inspect problems %v, quantization %+v; want %d modules", method, ir.Problems, ir.Quantization, len(linears))
		}
		// Converted to GPTQ, it passes the GPTQ checks and runs as it did.
		out := filepath.Join(t.TempDir(), "gptq")
		if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: dir, Out: out}); err != nil {
			t.Fatal(err)
		}
		if r, err := verify.CheckFormat(out); err != nil || !r.OK {
			t.Fatalf("%s converted to GPTQ: CheckFormat %v, failed %v", method, err, failedChecks(r))
		}
		ids := []int{1, 17, 200, 3, 99}
		if got, want := moeLogits(t, out, ids), moeLogits(t, dir, ids); !slices.Equal(got, want) {
			t.Errorf("%s converted to GPTQ: the logits differ from the %s checkpoint's", method, method)
		}
	}
}

// moeLogits runs ids through the model in dir on the CPU backend.
func moeLogits(t *testing.T, dir string, ids []int) []float32 {
	t.Helper()
	m, err := model.Load(dir, cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lg, err := m.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return lg
}

// TestMoEFormatSkippedExpert: a GPTQ Mixtral whose dynamic rule leaves
// one expert unquantized (its three Linears as fp16 weights) passes
// CheckFormat with those 3 modules counted as left unquantized, and Inspect
// finds no problem.
func TestMoEFormatSkippedExpert(t *testing.T) {
	q := fixtures.Mixtral(t, nil, synth.Options{Seed: 9, GPTQ: moeGPTQ()})
	const expert = "model.layers.0.block_sparse_moe.experts.3."
	rule := map[string]any{"-:" + strings.ReplaceAll(expert, ".", `\.`) + ".*": map[string]any{}}
	for _, name := range []string{"config.json", "quantize_config.json"} {
		path := filepath.Join(q, name)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		if block, ok := doc["quantization_config"].(map[string]any); ok {
			block["dynamic"] = rule
		} else {
			doc["dynamic"] = rule
		}
		if raw, err = json.Marshal(doc); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var extra []safetensors.Tensor
	for _, m := range []struct {
		name string
		N, K int
	}{{"w1", 96, 64}, {"w3", 96, 64}, {"w2", 64, 96}} {
		extra = append(extra, safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: expert + m.name + ".weight", DType: safetensors.F16, Shape: []int{m.N, m.K}}, Data: make([]byte, 2*m.N*m.K)})
	}
	fixtures.RewriteTensors(t, q, func(tt *safetensors.Tensor) bool { return !strings.HasPrefix(tt.Name, expert) }, extra...)
	r, err := verify.CheckFormat(q)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK {
		t.Errorf("CheckFormat: failed %v", failedChecks(r))
	}
	found := false
	for _, c := range r.Checks {
		if c.Name == "modules the config leaves unquantized: fp16 weight only" {
			found = c.Detail == "3 modules"
		}
	}
	if !found {
		t.Errorf("checks %+v: want 3 modules left unquantized", r.Checks)
	}
	ir, err := verify.Inspect(q)
	if err != nil {
		t.Fatal(err)
	}
	if len(ir.Problems) != 0 || ir.Quantization == nil || ir.Quantization.QuantizedModules != 53 {
		t.Errorf("Inspect: problems %v, quantization %+v; want none, 53 modules", ir.Problems, ir.Quantization)
	}
}
