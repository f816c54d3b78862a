package quantized

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
)

func TestReadConfig(t *testing.T) {
	const gptqFile = `{"bits": 4, "group_size": 128, "desc_act": false, "sym": true}`
	const autoAWQ = `{"zero_point": true, "q_group_size": 128, "w_bit": 4, "version": "GEMM"}`
	const awqBlock = `{"config": 1, "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "gemm"}}`
	const ctBlock = `{"quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
	  "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "strategy": "group", "group_size": 128}}}}}`
	for _, tc := range []struct {
		name   string
		files  map[string]string
		method Method
		source string
		err    string
	}{
		{"gptq quantize_config.json", map[string]string{"quantize_config.json": gptqFile, "config.json": `{}`}, GPTQ, "quantize_config.json", ""},
		{"gptq quant_config.json", map[string]string{"quant_config.json": gptqFile}, GPTQ, "quant_config.json", ""},
		{"autoawq quant_config.json", map[string]string{"quant_config.json": autoAWQ, "config.json": `{}`}, AWQ, "quant_config.json", ""},
		{"awq config.json", map[string]string{"config.json": awqBlock}, AWQ, "config.json", ""},
		{"awq both agree", map[string]string{"config.json": awqBlock, "quant_config.json": autoAWQ}, AWQ, "config.json", ""},
		{"awq both disagree", map[string]string{"config.json": awqBlock, "quant_config.json": strings.Replace(autoAWQ, "128", "64", 1)}, "", "",
			"quant_config.json (bits 4, group_size 64, version gemm) disagrees with"},
		{"compressed", map[string]string{"config.json": ctBlock}, CompressedTensors, "config.json", ""},
		{"other method", map[string]string{"config.json": `{"quantization_config": {"quant_method": "bitsandbytes", "bits": 4}}`}, "", "",
			`quant_method "bitsandbytes"`},
		{"none", map[string]string{"config.json": `{}`}, "", "", "no quantization_config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, s := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, err := ReadConfig(dir)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				if tc.name == "none" && !errors.Is(err, gptq.ErrNotQuantized) {
					t.Errorf("err = %v, want ErrNotQuantized", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Method != tc.method || filepath.Base(c.Source) != tc.source {
				t.Errorf("method %q from %s, want %q from %s", c.Method, c.Source, tc.method, tc.source)
			}
		})
	}
}
