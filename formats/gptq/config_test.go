package gptq

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func strp(s string) *string { return &s }

func TestDefaultQuantizeConfig(t *testing.T) {
	got := DefaultQuantizeConfig()
	want := QuantizeConfig{Bits: 4, GroupSize: -1, DampPercent: 0.01, DescAct: true, StaticGroups: false, Sym: true,
		TrueSequential: true, QuantMethod: "gptq", CheckpointFormat: "gptq"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DefaultQuantizeConfig() = %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestQuantizeConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *QuantizeConfig)
		errSub string
	}{
		{"bits 5", func(c *QuantizeConfig) { c.Bits = 5 }, "bits 5"},
		{"group 0", func(c *QuantizeConfig) { c.GroupSize = 0 }, "group_size 0"},
		{"damp 0", func(c *QuantizeConfig) { c.DampPercent = 0 }, "damp_percent 0"},
		{"damp 1", func(c *QuantizeConfig) { c.DampPercent = 1 }, "damp_percent 1"},
		{"awq", func(c *QuantizeConfig) { c.QuantMethod = "awq" }, `quant_method "awq"`},
		{"marlin format", func(c *QuantizeConfig) { c.CheckpointFormat = "marlin" }, `checkpoint_format "marlin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultQuantizeConfig()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.errSub) {
				t.Fatalf("err = %v, want one containing %q", err, tt.errSub)
			}
		})
	}
}

func mainBranch() QuantizeConfig {
	c := DefaultQuantizeConfig()
	c.GroupSize = 128
	c.DampPercent = 0.1
	c.ModelFileBaseName = strp("model")
	return c
}

func TestMarshalQuantizeConfig(t *testing.T) {
	got, err := mainBranch().MarshalQuantizeConfig()
	if err != nil {
		t.Fatal(err)
	}
	// AutoGPTQ key order, spec §2.1.
	want := `{
  "bits": 4,
  "group_size": 128,
  "damp_percent": 0.1,
  "desc_act": true,
  "static_groups": false,
  "sym": true,
  "true_sequential": true,
  "model_name_or_path": null,
  "model_file_base_name": "model",
  "quant_method": "gptq",
  "checkpoint_format": "gptq"
}
`
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	back, err := ParseQuantizeConfig(got, "quantize_config.json")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*back, mainBranch()) {
		t.Fatalf("round trip = %+v, want %+v", *back, mainBranch())
	}
}

func TestConfigJSONBlock(t *testing.T) {
	c := mainBranch()
	c.StaticGroups = true
	got, err := json.Marshal(c.ConfigJSONBlock())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"quant_method":"gptq","bits":4,"group_size":128,"desc_act":true,"sym":true,"damp_percent":0.1,"true_sequential":true,"static_groups":true,"checkpoint_format":"gptq"}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestReadQuantizeConfig(t *testing.T) {
	tests := []struct {
		dir      string
		wantFile string
		want     QuantizeConfig
	}{
		{
			// TheBloke's quantize_config.json wins over config.json's block.
			dir: "autogptq", wantFile: "quantize_config.json",
			want: QuantizeConfig{Bits: 4, GroupSize: 128, DampPercent: 0.1, DescAct: true, Sym: true, TrueSequential: true,
				ModelFileBaseName: strp("model"), QuantMethod: "gptq", CheckpointFormat: "gptq"},
		},
		{
			// w_bit/q_group_size aliases; the rest AutoGPTQ defaults.
			dir: "awq-keys", wantFile: "quant_config.json",
			want: QuantizeConfig{Bits: 4, GroupSize: 64, DampPercent: 0.01, DescAct: true, Sym: true, TrueSequential: true,
				QuantMethod: "gptq", CheckpointFormat: "gptq"},
		},
		{
			// config.json-only (transformers/optimum).
			dir: "transformers", wantFile: "config.json",
			want: QuantizeConfig{Bits: 4, GroupSize: 128, DampPercent: 0.01, DescAct: false, Sym: true, TrueSequential: true,
				QuantMethod: "gptq", CheckpointFormat: "gptq"},
		},
		{
			// GPTQModel v2: checkpoint_format gptq_v2, values from meta.
			dir: "gptqmodel-v2", wantFile: "quantize_config.json",
			want: QuantizeConfig{Bits: 4, GroupSize: 128, DampPercent: 0.05, DescAct: true, StaticGroups: true, Sym: false,
				TrueSequential: false, QuantMethod: "gptq", CheckpointFormat: "gptq_v2"},
		},
		{
			// missing sym defaults to true, as AutoGPTQ.
			dir: "no-sym", wantFile: "quantize_config.json",
			want: QuantizeConfig{Bits: 3, GroupSize: -1, DampPercent: 0.01, DescAct: false, Sym: true, TrueSequential: true,
				QuantMethod: "gptq", CheckpointFormat: "gptq"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", "configs", tt.dir)
			got, file, err := ReadQuantizeConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, tt.wantFile); file != want {
				t.Errorf("source = %q, want %q", file, want)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", *got, tt.want)
			}
			if got.Format() != Format(tt.want.CheckpointFormat) {
				t.Errorf("Format() = %q", got.Format())
			}
		})
	}
}

func TestReadQuantizeConfigErrors(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name         string
		dir          string
		notQuantized bool
		errSub       string
	}{
		{"fp checkpoint", filepath.Join("testdata", "configs", "fp"), true, "no quantization_config"},
		{"empty dir", empty, true, "no quantize_config.json"},
		{"awq", filepath.Join("testdata", "configs", "awq"), false, `quant_method "awq"`},
		{"bad json", filepath.Join("testdata", "configs", "bad-json"), false, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadQuantizeConfig(tt.dir)
			if err == nil || !strings.Contains(err.Error(), tt.errSub) {
				t.Fatalf("err = %v, want one containing %q", err, tt.errSub)
			}
			if got := errors.Is(err, ErrNotQuantized); got != tt.notQuantized {
				t.Fatalf("errors.Is(err, ErrNotQuantized) = %v, want %v", got, tt.notQuantized)
			}
		})
	}
}

func TestParseQuantizeConfigErrors(t *testing.T) {
	tests := []struct{ name, doc, errSub string }{
		{"missing bits", `{"group_size":128}`, `missing required key "bits"`},
		{"null bits", `{"bits":null,"group_size":128}`, `bits: got null, want an integer`},
		{"bits string", `{"bits":"4"}`, `bits: got "4", want an integer`},
		{"bits fraction", `{"bits":4.5}`, "bits: got 4.5"},
		{"sym string", `{"bits":4,"sym":"yes"}`, "sym: got"},
		{"damp string", `{"bits":4,"damp_percent":"0.1"}`, "damp_percent: got"},
		{"bits 16", `{"bits":16}`, "bits 16"},
		{"pack int16", `{"bits":4,"pack_dtype":"int16"}`, `pack_dtype "int16"`},
		{"array", `[1,2]`, "invalid JSON"},
		{"null", `null`, "got null"},
		{"meta not object", `{"bits":4,"meta":3}`, "meta"},
		{"name not string", `{"bits":4,"model_file_base_name":3}`, "model_file_base_name"},
		{"marlin", `{"bits":4,"checkpoint_format":"marlin"}`, "checkpoint_format"},
		// GPTQModel's dynamic: per-module overrides that gptqtool would read
		// with the checkpoint's own bits or group size.
		{"dynamic bits", `{"bits":4,"dynamic":{"+:.*down_proj":{"bits":8}}}`, `dynamic "+:.*down_proj": bits 8, where the checkpoint's is 4`},
		{"dynamic group", `{"bits":4,"group_size":128,"dynamic":{".*mlp.*":{"group_size":32}}}`, `dynamic ".*mlp.*": group_size 32, where the checkpoint's is 128`},
		{"dynamic not object", `{"bits":4,"dynamic":[1]}`, "dynamic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseQuantizeConfig([]byte(tt.doc), "q.json")
			if err == nil || !strings.Contains(err.Error(), tt.errSub) {
				t.Fatalf("err = %v, want one containing %q", err, tt.errSub)
			}
			if !strings.Contains(err.Error(), "q.json") {
				t.Errorf("err %v does not name the file", err)
			}
		})
	}
}

// TestParseQuantizeConfigDynamic: GPTQModel's dynamic entries that leave
// a module unquantized ("-:"), repeat the checkpoint's own bits and group
// size or change only what does not change how the tensors read (sym,
// desc_act: the zero points and g_idx are stored), read as the checkpoint
// reads without them.
func TestParseQuantizeConfigDynamic(t *testing.T) {
	for _, doc := range []string{
		`{"bits":4,"dynamic":{"-:model.layers.0.mlp.down_proj":{}}}`,
		`{"bits":4,"group_size":128,"dynamic":{"+:.*down_proj":{"bits":4,"group_size":128}}}`,
		`{"bits":4,"dynamic":{}}`,
		`{"bits":4,"sym":true,"dynamic":{".*":{"sym":false,"desc_act":true}}}`, // tensors read alike
		`{"bits":4,"dynamic":null}`,
	} {
		c, err := ParseQuantizeConfig([]byte(doc), "q.json")
		if err != nil || c.Bits != 4 {
			t.Errorf("%s: %+v, %v", doc, c, err)
		}
	}
}

func FuzzParseQuantizeConfig(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "configs", "*", "*.json"))
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"bits":4,"meta":{"damp_percent":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseQuantizeConfig(data, "fuzz.json")
		if err != nil {
			return
		}
		out, err := c.MarshalQuantizeConfig()
		if err != nil {
			t.Fatalf("marshal of a parsed config: %v", err)
		}
		back, err := ParseQuantizeConfig(out, "fuzz.json")
		if err != nil {
			t.Fatalf("reparse: %v\n%s", err, out)
		}
		c.LMHead = false // not part of quantize_config.json
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip = %+v, want %+v", back, c)
		}
	})
}

// TestCheckAgreement: quantize_config.json and config.json's
// quantization_config must agree on the keys both give; keys config.json
// leaves out are not compared (transformers and AutoGPTQ default them
// differently), and a config.json without the block has nothing to agree.
func TestCheckAgreement(t *testing.T) {
	const qcfg = `{"bits": 4, "group_size": 128, "desc_act": false, "sym": true, "damp_percent": 0.1}`
	for _, tc := range []struct {
		name, block string
		tensorsOnly bool
		want        []string // in the error; none: agreement
	}{
		{"same", `{"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": false, "sym": true, "damp_percent": 0.01}`, false, nil},
		{"keys left out", `{"quant_method": "gptq", "bits": 4}`, false, nil},
		{"keys null", `{"quant_method": "gptq", "bits": 4, "desc_act": null, "sym": null}`, false, nil},
		{"no block", ``, false, nil},
		{"bits", `{"quant_method": "gptq", "bits": 8, "group_size": 128}`, true, []string{"config.json", "quantize_config.json", "bits 4 vs 8"}},
		{"desc_act and format", `{"quant_method": "gptq", "bits": 4, "desc_act": true, "checkpoint_format": "gptq_v2"}`, false, []string{"desc_act false vs true", "checkpoint_format gptq vs gptq_v2"}},
		{"format, tensors only", `{"quant_method": "gptq", "bits": 4, "desc_act": true, "checkpoint_format": "gptq_v2"}`, true, []string{"checkpoint_format gptq vs gptq_v2"}},
		{"desc_act, tensors only", `{"quant_method": "gptq", "bits": 4, "desc_act": true, "static_groups": true}`, true, nil},
		{"aliases", `{"quant_method": "gptq", "w_bit": 4, "q_group_size": 64}`, false, []string{"group_size 128 vs 64"}},
		{"block does not parse", `{"quant_method": "awq", "bits": 4}`, false, []string{"awq"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := `{"model_type": "mistral"}`
			if tc.block != "" {
				cfg = `{"model_type": "mistral", "quantization_config": ` + tc.block + `}`
			}
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644)
			os.WriteFile(filepath.Join(dir, "quantize_config.json"), []byte(qcfg), 0o644)
			qc, src, err := ReadQuantizeConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckAgreement(dir, qc, src, tc.tensorsOnly)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("err = %v, want agreement", err)
				}
				return
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want one naming %q", err, w)
				}
			}
		})
	}
	// Read from config.json itself: nothing to compare.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"quantization_config": {"quant_method": "gptq", "bits": 8}}`), 0o644)
	qc, src, err := ReadQuantizeConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckAgreement(dir, qc, src, false); err != nil {
		t.Errorf("config.json alone: %v", err)
	}
}
