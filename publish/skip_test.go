package publish_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

// skipList leaves layer 0's down_proj (by regex), layer 2's gate/up (a
// whole fused group, by regex) and layer 4's q/k/v (a whole fused group,
// by name) unquantized.
var skipList = []string{
	`re:model\.layers\.0\.mlp\.down_proj`,
	`re:model\.layers\.2\.mlp\.(gate|up)_proj`,
	"model.layers.4.self_attn.q_proj", "model.layers.4.self_attn.k_proj", "model.layers.4.self_attn.v_proj",
}

var skipped = []string{
	"model.layers.0.mlp.down_proj", "model.layers.2.mlp.gate_proj", "model.layers.2.mlp.up_proj",
	"model.layers.4.self_attn.q_proj", "model.layers.4.self_attn.k_proj", "model.layers.4.self_attn.v_proj",
}

// reMatch is Python's re.match (anchored at the start only), which
// GPTQModel's dynamic_get and vLLM's get_dynamic_override apply.
func reMatch(t *testing.T, pattern, name string) bool {
	t.Helper()
	re, err := regexp.Compile(`^(?:` + pattern + `)`)
	if err != nil {
		t.Fatalf("pattern %q: %v", pattern, err)
	}
	return re.MatchString(name)
}

// quantizationConfigs returns the two config objects of checkpoint dir
// that carry the quantization settings: quantize_config.json and
// config.json's quantization_config, by file name.
func quantizationConfigs(t *testing.T, dir string) map[string]json.RawMessage {
	t.Helper()
	qcb, err := os.ReadFile(filepath.Join(dir, "quantize_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfgb, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfgDoc struct {
		QC json.RawMessage `json:"quantization_config"`
	}
	if err := json.Unmarshal(cfgb, &cfgDoc); err != nil {
		t.Fatal(err)
	}
	return map[string]json.RawMessage{"quantize_config.json": qcb, "config.json": cfgDoc.QC}
}

// dynamicOf reads the dynamic key of a config object in file order: its
// patterns and, for each, its overrides.
func dynamicOf(t *testing.T, block json.RawMessage) ([]string, []map[string]any) {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(block, &doc); err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(doc["dynamic"]))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("dynamic: %s", doc["dynamic"])
	}
	var keys []string
	var vals []map[string]any
	for d.More() {
		k, _ := d.Token()
		var v map[string]any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("dynamic %v: %v", k, err)
		}
		keys, vals = append(keys, k.(string)), append(vals, v)
	}
	return keys, vals
}

// TestSkipModules quantizes openchat-tiny with and without skipSet, with
// both drivers, and checks the skipping run's checkpoint: the skipped
// modules as their source weights in fp16 and nothing else, the modules
// quantized before the first skip identical to the run without it, the
// dynamic rules matching exactly the skipped modules under both the
// unfused names (GPTQModel) and vLLM's fused ones, the format checks, the
// card, and a load through the CPU backend.
func TestSkipModules(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	samples := calibration(t, modelDir, 4, 64)
	src, err := safetensors.OpenDir(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	br := publish.Branch{Name: "main", Bits: 4, GroupSize: 128, DescAct: true, Damp: 0.1}
	for _, solver := range []quantize.Solver{nil, quantize.HostSolver{}} {
		name := "reference"
		if solver != nil {
			name = "device"
		}
		t.Run(name, func(t *testing.T) {
			quant := func(skip []string) string {
				dir := filepath.Join(t.TempDir(), "q")
				_, err := publish.Quantize(context.Background(), publish.RunOptions{
					ModelDir: modelDir, Out: dir, Branches: []publish.Branch{br}, Sym: true, TrueSequential: true,
					Samples: samples, SeqLen: 64, Backend: cpu.New(0), Solver: solver, SkipModules: skip,
				})
				if err != nil {
					t.Fatal(err)
				}
				return dir
			}
			base, dir := quant(nil), quant(skipList)
			got, want := tensors(t, dir), tensors(t, base)
			for _, n := range skipped {
				for _, sfx := range []string{".qweight", ".qzeros", ".scales", ".g_idx"} {
					if _, ok := got[n+sfx]; ok {
						t.Errorf("%s%s written for a skipped module", n, sfx)
					}
				}
				w, ok := got[n+".weight"]
				if !ok {
					t.Errorf("%s.weight missing", n)
					continue
				}
				s, err := src.Tensor(n + ".weight")
				if err != nil {
					t.Fatal(err)
				}
				f, err := s.Float32()
				if err != nil {
					t.Fatal(err)
				}
				wantBytes := make([]byte, 2*len(f))
				half.F32ToF16Bytes(wantBytes, f)
				if w.DType != safetensors.F16 || !slices.Equal(w.Shape, s.Shape) || !bytes.Equal(w.Data, wantBytes) {
					t.Errorf("%s.weight: %s %v, want the source's %v rounded to fp16", n, w.DType, w.Shape, s.Shape)
				}
			}
			// Layer 0's modules before down_proj (the first skipped one in
			// the pipeline order) saw exactly what they saw without the skip.
			for _, m := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj"} {
				for _, sfx := range []string{".qweight", ".qzeros", ".scales", ".g_idx"} {
					n := "model.layers.0." + m + sfx
					if !bytes.Equal(got[n].Data, want[n].Data) {
						t.Errorf("%s differs from the run without --skip-modules", n)
					}
				}
			}
			// Layer 1 sees layer 0's unquantized down_proj: its inputs, and so
			// its codes, differ.
			if n := "model.layers.1.self_attn.q_proj.qweight"; bytes.Equal(got[n].Data, want[n].Data) {
				t.Errorf("%s equal to the run without the skip: layer 1 did not see layer 0's unquantized down_proj", n)
			}

			// The dynamic rules, in both configs.
			wantRules := []string{
				`-:model\.layers\.0\.mlp\.down_proj$`,
				`-:model\.layers\.2\.mlp\.(?:gate_proj|gate_up_proj)$`,
				`-:model\.layers\.2\.mlp\.(?:up_proj|gate_up_proj)$`,
				`-:model\.layers\.4\.self_attn\.(?:q_proj|qkv_proj)$`,
				`-:model\.layers\.4\.self_attn\.(?:k_proj|qkv_proj)$`,
				`-:model\.layers\.4\.self_attn\.(?:v_proj|qkv_proj)$`,
			}
			for file, block := range quantizationConfigs(t, dir) {
				rules, overrides := dynamicOf(t, block)
				for i, v := range overrides {
					if len(v) != 0 {
						t.Errorf("%s: dynamic %s: %v, want {}", file, rules[i], v)
					}
				}
				wantRules := wantRules
				if file == "config.json" {
					// (config.json's keys are written sorted; the order of
					// rules that all skip does not change what they match.)
					rules = slices.Sorted(slices.Values(rules))
					wantRules = slices.Sorted(slices.Values(wantRules))
				}
				if !slices.Equal(rules, wantRules) {
					t.Errorf("%s: dynamic %q, want %q", file, rules, wantRules)
				}
				if strings.Contains(string(block), "modules_in_block_to_quantize") {
					t.Errorf("%s: modules_in_block_to_quantize written for a skip that differs between layers", file)
				}
				matches := func(name string) bool {
					for _, r := range rules {
						if reMatch(t, strings.TrimPrefix(r, "-:"), name) {
							return true
						}
					}
					return false
				}
				for li := range 12 { // past the 6 layers: layer 1 must not match 10 or 11
					p := model.LayerPrefix(li) + "."
					for _, m := range model.LinearModules {
						if got, want := matches(p+m), slices.Contains(skipped, p+m); got != want {
							t.Errorf("%s: %s%s matched %v, want %v", file, p, m, got, want)
						}
					}
					for _, fused := range []string{"self_attn.qkv_proj", "mlp.gate_up_proj"} {
						want := (li == 4 && fused == "self_attn.qkv_proj") || (li == 2 && fused == "mlp.gate_up_proj")
						if got := matches(p + fused); got != want {
							t.Errorf("%s: vLLM's %s%s matched %v, want %v", file, p, fused, got, want)
						}
					}
				}
			}
			qc, _, err := gptq.ReadQuantizeConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range skipped {
				if s, err := qc.Skipped(n); err != nil || !s {
					t.Errorf("QuantizeConfig.Skipped(%s) = %v, %v", n, s, err)
				}
			}

			rep, err := verify.CheckFormat(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range rep.Checks {
				if !c.OK {
					t.Errorf("format check %q failed: %s", c.Name, c.Detail)
				}
			}
			card, err := os.ReadFile(filepath.Join(dir, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range skipped {
				if !strings.Contains(string(card), "`"+n+"`") {
					t.Errorf("model card does not list %s", n)
				}
			}
			if !strings.Contains(string(card), "transformers/optimum: cannot load them") {
				t.Errorf("model card does not say transformers cannot load a per-layer skip:\n%s", card)
			}

			m, err := model.Load(dir, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			logits, err := m.Forward(samples[0].IDs[:16], nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range logits {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("logit %d = %v", i, v)
				}
			}

			// A skipped module kept in BF16 (as GPTQModel may keep a bf16
			// model's) passes the format check; one in I32 fails it, named.
			skippedAs(t, dir, skipped[0], safetensors.BF16)
			if rep, err := verify.CheckFormat(dir); err != nil || !rep.OK {
				t.Errorf("a BF16 skipped weight fails the format check: %v %+v", err, rep)
			}
			skippedAs(t, dir, skipped[0], safetensors.I32)
			rep, err = verify.CheckFormat(dir)
			if err != nil {
				t.Fatal(err)
			}
			named := false
			for _, c := range rep.Checks {
				named = named || (!c.OK && strings.Contains(c.Detail, skipped[0]+".weight: I32"))
			}
			if rep.OK || !named {
				t.Errorf("an I32 skipped weight: format check OK %v, no failure naming %s.weight: %+v", rep.OK, skipped[0], rep.Checks)
			}
		})
	}
}

// skippedAs rewrites module's fp16 .weight in dir's model.safetensors as
// dt: BF16 (the values rounded) or any other type (the same bytes).
func skippedAs(t *testing.T, dir, module string, dt safetensors.DType) {
	t.Helper()
	fixtures.RewriteTensors(t, dir, func(tt *safetensors.Tensor) bool {
		if tt.Name != module+".weight" {
			return true
		}
		if dt == safetensors.BF16 && tt.DType == safetensors.F16 {
			f := make([]float32, len(tt.Data)/2)
			half.F16BytesToF32(f, tt.Data)
			half.F32ToBF16Bytes(tt.Data, f)
		}
		tt.DType = dt
		if dt == safetensors.I32 {
			tt.Shape = []int{tt.Shape[0], tt.Shape[1] / 2}
		}
		return true
	})
}

// TestSkipModulesUniform: a skip that is the same module in every layer
// is written as optimum's modules_in_block_to_quantize too (the only skip
// transformers/optimum load), in optimum's list-of-lists form, and convert
// carries both keys over.
func TestSkipModulesUniform(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	dir := filepath.Join(t.TempDir(), "q")
	_, err := publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: modelDir, Out: dir, Branches: []publish.Branch{{Name: "rtn", Bits: 8, GroupSize: -1, Damp: 0.01}},
		Sym: true, TrueSequential: true, RTN: true, Backend: cpu.New(0), SkipModules: []string{`re:model\.layers\.\d+\.mlp\.down_proj`},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"}, {"self_attn.o_proj"}, {"mlp.up_proj", "mlp.gate_proj"}}
	check := func(dir string) {
		t.Helper()
		for file, block := range quantizationConfigs(t, dir) {
			var doc struct {
				MIB [][]string `json:"modules_in_block_to_quantize"`
			}
			if err := json.Unmarshal(block, &doc); err != nil {
				t.Fatal(err)
			}
			if got := doc.MIB; !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("%s: modules_in_block_to_quantize %q, want %q", file, got, want)
			}
		}
		qc, _, err := gptq.ReadQuantizeConfig(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(qc.Dynamic) != 6 {
			t.Errorf("%d dynamic rules, want one per layer's down_proj (6)", len(qc.Dynamic))
		}
		// optimum's endswith test keeps down_proj unquantized alone.
		for _, m := range model.LinearModules {
			qc.Dynamic = nil
			if s, _ := qc.Skipped("model.layers.3." + m); s != (m == "mlp.down_proj") {
				t.Errorf("modules_in_block_to_quantize: %s skipped %v", m, s)
			}
		}
		rep, err := verify.CheckFormat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK {
			t.Errorf("verify format of %s: %+v", dir, rep.Checks)
		}
	}
	check(dir)
	conv := filepath.Join(t.TempDir(), "v2")
	convert(t, publish.ConvertOptions{In: dir, Out: conv, Format: gptq.FormatV2})
	check(conv)
	if _, err := model.Load(conv, cpu.New(0)); err != nil {
		t.Errorf("loading the converted checkpoint: %v", err)
	}

	// Without the dynamic key (and modules_in_block_to_quantize) that say
	// so, a module stored unquantized fails the format check, as before.
	for _, file := range []string{"quantize_config.json", "config.json"} {
		b, _ := os.ReadFile(filepath.Join(conv, file))
		var doc map[string]any
		json.Unmarshal(b, &doc)
		strip := func(m map[string]any) {
			delete(m, "dynamic")
			delete(m, "modules_in_block_to_quantize")
		}
		strip(doc)
		if qc, ok := doc["quantization_config"].(map[string]any); ok {
			strip(qc)
		}
		out, _ := json.Marshal(doc)
		os.WriteFile(filepath.Join(conv, file), out, 0o644)
	}
	rep, err := verify.CheckFormat(conv)
	if err != nil {
		t.Fatal(err)
	}
	failed := ""
	for _, c := range rep.Checks {
		if !c.OK {
			failed += c.Name + ": " + c.Detail + "\n"
		}
	}
	if !strings.Contains(failed, "no unquantized Linear weights left") || !strings.Contains(failed, "down_proj.weight is stored unquantized") {
		t.Errorf("format check of a checkpoint storing down_proj unquantized without saying so: failures:\n%s", failed)
	}
}

// TestSkipModulesRefused: patterns that match no module, regular
// expressions that do not compile, and a partial fused group (a problem of
// the preflight unless AllowUnportable).
func TestSkipModulesRefused(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	for _, tc := range []struct {
		skip []string
		want string
	}{
		{[]string{"model.layers.0.mlp.down_pro"}, `"model.layers.0.mlp.down_pro" matches no quantizable Linear module`},
		{[]string{"model.layers.6.mlp.down_proj"}, "matches no quantizable Linear module"},
		{[]string{`re:mlp\.down_proj`}, "must match the whole name"}, // (not a search)
		{[]string{"re:model.layers.(0"}, "missing closing )"},
		{[]string{"re:.*"}, "nothing to quantize"},
	} {
		_, err := publish.Quantize(context.Background(), publish.RunOptions{
			ModelDir: modelDir, Out: filepath.Join(t.TempDir(), "q"), Branches: []publish.Branch{mainBranch},
			Sym: true, TrueSequential: true, RTN: true, Backend: cpu.New(0), SkipModules: tc.skip,
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want one saying %q", tc.skip, err, tc.want)
		}
	}
	for _, allow := range []bool{false, true} {
		rep, err := publish.Preflight(context.Background(), publish.PreflightOptions{
			RunOptions: publish.RunOptions{ModelDir: modelDir, Out: filepath.Join(t.TempDir(), "q"), Branches: []publish.Branch{mainBranch},
				Sym: true, TrueSequential: true, RTN: true, Backend: cpu.New(0), SkipModules: []string{"model.layers.1.self_attn.q_proj"}},
			AllowUnportable: allow,
		})
		if err != nil {
			t.Fatal(err)
		}
		msgs := strings.Join(rep.Problems, "\n")
		if allow {
			msgs = strings.Join(rep.Warnings, "\n")
			if len(rep.Problems) > 0 {
				t.Errorf("AllowUnportable: problems %q", rep.Problems)
			}
		}
		for _, w := range []string{"model.layers.1.self_attn.q_proj skipped", "model.layers.1.self_attn.k_proj", "qkv_proj", "vLLM cannot load"} {
			if !strings.Contains(msgs, w) {
				t.Errorf("allow %v: preflight says %q, want it to name %q", allow, msgs, w)
			}
		}
	}
}

// TestSkipModulesResume: an interrupted run resumes to the bytes of an
// uninterrupted one (the replayed layers keep the skipped modules' source
// weights), with both drivers, and is refused with another skip list.
func TestSkipModulesResume(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	samples := calibration(t, modelDir, 4, 64)
	for _, solver := range []quantize.Solver{nil, quantize.HostSolver{}} {
		opts := func(out string, skip []string) publish.RunOptions {
			return publish.RunOptions{ModelDir: modelDir, Out: out, Branches: []publish.Branch{mainBranch}, Sym: true, TrueSequential: true,
				Samples: samples, SeqLen: 64, Backend: cpu.New(0), Solver: solver, SkipModules: skip}
		}
		whole := filepath.Join(t.TempDir(), "whole")
		if _, err := publish.Quantize(context.Background(), opts(whole, skipList)); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "q")
		ctx, cancel := context.WithCancel(context.Background())
		o := opts(out, skipList)
		o.Progress = func(_ string, done, _ int) {
			if done >= 3*len(model.LinearModules)+1 { // in layer 3, past the skipped modules of 0 and 2
				cancel()
			}
		}
		if _, err := publish.Quantize(ctx, o); err == nil {
			t.Fatal("interrupted run: no error")
		}
		o = opts(out, skipList[:1])
		o.Resume = true
		if _, err := publish.Quantize(context.Background(), o); err == nil || !strings.Contains(err.Error(), "--skip-modules") {
			t.Errorf("resume with another skip list: err = %v, want a refusal naming --skip-modules", err)
		}
		o = opts(out, skipList)
		o.Resume = true
		if _, err := publish.Quantize(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		got, want := tensors(t, out), tensors(t, whole)
		for n, w := range want {
			if !bytes.Equal(got[n].Data, w.Data) {
				t.Errorf("solver %v: resumed %s differs from the uninterrupted run", solver, n)
			}
		}
	}
}

// TestSkipModulesConvertKeepsRuleOrder: convert carries the dynamic rules
// of the input's quantize_config.json in their file order. The first rule
// that re.match matches decides (GPTQModel, vLLM): a "-:" rule ahead of a
// "+:" rule that repeats the checkpoint's bits leaves layer 0's down_proj
// unquantized; sorted (a JSON object's keys), the "+:" rule would come
// first and say it is quantized, where it is stored as an fp16 weight.
// (config.json is written with its keys sorted at every level, as
// transformers writes it, rules included.)
func TestSkipModulesConvertKeepsRuleOrder(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	dir := filepath.Join(t.TempDir(), "q")
	_, err := publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: modelDir, Out: dir, Branches: []publish.Branch{{Name: "rtn", Bits: 8, GroupSize: -1, Damp: 0.01}},
		Sym: true, TrueSequential: true, RTN: true, Backend: cpu.New(0), SkipModules: []string{"model.layers.0.mlp.down_proj"},
	})
	if err != nil {
		t.Fatal(err)
	}
	rule := []byte(`"-:model\\.layers\\.0\\.mlp\\.down_proj$": {}`)
	wantRules := []string{`-:model\.layers\.0\.mlp\.down_proj$`, `+:model\.layers\.0\.`}
	for _, file := range []string{"quantize_config.json", "config.json"} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, rule) {
			t.Fatalf("%s has no rule %s:\n%s", file, rule, b)
		}
		b = bytes.Replace(b, rule, append(slices.Clone(rule), `, "+:model\\.layers\\.0\\.": {"bits": 8}`...), 1)
		if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conv := filepath.Join(t.TempDir(), "v2")
	convert(t, publish.ConvertOptions{In: dir, Out: conv, Format: gptq.FormatV2})
	for _, d := range []string{dir, conv} {
		qc, _, err := gptq.ReadQuantizeConfig(d)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := qc.Skipped("model.layers.0.mlp.down_proj"); err != nil || !s {
			t.Errorf("%s: Skipped(model.layers.0.mlp.down_proj) = %v, %v, want true", d, s, err)
		}
	}
	for file, block := range quantizationConfigs(t, conv) {
		rules, _ := dynamicOf(t, block)
		want := wantRules
		if file == "config.json" {
			want = slices.Sorted(slices.Values(wantRules))
		}
		if !slices.Equal(rules, want) {
			t.Errorf("converted %s: dynamic rules %q, want %q", file, rules, want)
		}
	}
	rep, err := verify.CheckFormat(conv)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		if !c.OK {
			t.Errorf("converted: format check %q failed: %s", c.Name, c.Detail)
		}
	}
}

// TestSkipModulesNotSequential: without true-sequential every module of a
// layer is solved from the layer's own source weights, so layer 0's
// modules that are not skipped come out as in the run without the skip
// (an input that only skipped modules read is not tapped, with either
// driver), and the checkpoint passes the format checks.
func TestSkipModulesNotSequential(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	samples := calibration(t, modelDir, 4, 64)
	br := publish.Branch{Name: "main", Bits: 4, GroupSize: 128, Damp: 0.1}
	// Layer 0: all of attention skipped (attn_norm and attn_out untapped).
	skip := []string{`re:model\.layers\.0\.self_attn\..*`, "model.layers.3.mlp.down_proj"}
	for _, solver := range []quantize.Solver{nil, quantize.HostSolver{}} {
		quant := func(skip []string) string {
			dir := filepath.Join(t.TempDir(), "q")
			_, err := publish.Quantize(context.Background(), publish.RunOptions{
				ModelDir: modelDir, Out: dir, Branches: []publish.Branch{br}, Sym: true,
				Samples: samples, SeqLen: 64, Backend: cpu.New(0), Solver: solver, SkipModules: skip,
			})
			if err != nil {
				t.Fatal(err)
			}
			return dir
		}
		base, dir := quant(nil), quant(skip)
		got, want := tensors(t, dir), tensors(t, base)
		for _, m := range []string{"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
			n := "model.layers.0." + m + ".qweight"
			if !bytes.Equal(got[n].Data, want[n].Data) {
				t.Errorf("solver %v: %s differs from the run without the skip", solver, n)
			}
		}
		for _, n := range []string{"model.layers.0.self_attn.o_proj.weight", "model.layers.3.mlp.down_proj.weight"} {
			if _, ok := got[n]; !ok {
				t.Errorf("solver %v: %s missing", solver, n)
			}
		}
		rep, err := verify.CheckFormat(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range rep.Checks {
			if !c.OK {
				t.Errorf("solver %v: format check %q failed: %s", solver, c.Name, c.Detail)
			}
		}
	}
}
