package kernels

import (
	"slices"
	"strings"
	"testing"
)

// TestModuleOf checks the parts that kernel names map to, hand-derived
// from the naming in qgemv.cu and decode.cu, and that other names and files
// compile whole.
func TestModuleOf(t *testing.T) {
	cases := []struct {
		file, name string
		key        string
		opts       []string
	}{
		{"qgemv.cu", "qmma4_t1_f16", "qgemv.cu[QG_BITS=4,KDT=1,QG_NRM=0]", []string{"-DQG_BITS=4", "-DKDT=1", "-DQG_NRM=0"}},
		{"qgemv.cu", "qmma4_t4_sg_bf16", "qgemv.cu[QG_BITS=4,KDT=2,QG_NRM=0]", nil},
		{"qgemv.cu", "qmma8_t2_r_f32", "qgemv.cu[QG_BITS=8,KDT=0,QG_NRM=0]", nil},
		{"qgemv.cu", "qmma4_t1_n_f16", "qgemv.cu[QG_BITS=4,KDT=1,QG_NRM=1]", nil},
		{"qgemv.cu", "qmma8_t1_sg_n_bf16", "qgemv.cu[QG_BITS=8,KDT=2,QG_NRM=1]", nil},
		{"qgemv.cu", "qmma4_t1_n_r_f16", "qgemv.cu[QG_BITS=4,KDT=1,QG_NRM=1]", nil},
		{"qgemv.cu", "qmma8_t1_a_bf16", "qgemv.cu[QG_BITS=8,KDT=2,QG_NRM=0]", nil},
		{"qgemv.cu", "qdequant8_f16", "qgemv.cu[QG_BITS=8,KDT=1,QG_NRM=0]", nil},
		{"qgemv.cu", "qmma4_t4_w_f16", "qgemv.cu[QG_BITS=4,KDT=1,QG_WG=1]", []string{"-DQG_BITS=4", "-DKDT=1", "-DQG_WG=1"}},
		{"qgemv.cu", "qmma8_t2_w_r_bf16", "qgemv.cu[QG_BITS=8,KDT=2,QG_WG=1]", nil},
		{"qgemv.cu", "qmma4_t3_w_f16", "qgemv.cu[QG_BITS=4,KDT=1,QG_WG=1]", nil},
		{"qgemv.cu", "qmma4_t5_w_f16", "qgemv.cu[QG_BITS=4,KDT=1,QG_WG=2]", []string{"-DQG_BITS=4", "-DKDT=1", "-DQG_WG=2"}},
		{"qgemv.cu", "qmma8_t8_w_r_bf16", "qgemv.cu[QG_BITS=8,KDT=2,QG_WG=2]", nil},
		{"qgemv.cu", "glu_rows_bf16", "qgemv.cu[QG_BITS=0]", []string{"-DQG_BITS=0"}},
		{"qgemv.cu", "gather_cols_f32", "qgemv.cu[QG_BITS=0]", nil},
		// ScalesOnly: the same part with QG_SZ16.
		{"qgemv.cu", "qmma4_t1_g_f16+sz16", "qgemv.cu[QG_BITS=4,KDT=1,QG_NRM=0,QG_SZ16=1]", []string{"-DQG_BITS=4", "-DKDT=1", "-DQG_NRM=0", "-DQG_SZ16=1"}},
		{"qgemv.cu", "qmma8_t5_w_r_bf16+sz16", "qgemv.cu[QG_BITS=8,KDT=2,QG_WG=2,QG_SZ16=1]", nil},
		{"qgemv.cu", "qdequant4_f32+sz16", "qgemv.cu[QG_BITS=4,KDT=0,QG_NRM=0,QG_SZ16=1]", nil},
		{"qgemv.cu", "qmma4_t1_n_f16+sz16", "qgemv.cu[QG_BITS=4,KDT=1,QG_NRM=1,QG_SZ16=1]", nil},
		// qglu.cu: a bit width, block shape and dtype a part, QG_SZ16 for
		// ScalesOnly.
		{"qglu.cu", "qglu8_w16d8_f16", "qglu.cu[QL_BITS=8,KDT=1,QL_W=16,QL_D=8]", []string{"-DQL_BITS=8", "-DKDT=1", "-DQL_W=16", "-DQL_D=8"}},
		{"qglu.cu", "qglu4_w32d4_bf16+sz16", "qglu.cu[QL_BITS=4,KDT=2,QL_W=32,QL_D=4,QG_SZ16=1]", []string{"-DQL_BITS=4", "-DKDT=2", "-DQL_W=32", "-DQL_D=4", "-DQG_SZ16=1"}},
		{"qglu.cu", "qglu8_w16d4_n_f16+sz16", "qglu.cu[QL_BITS=8,KDT=1,QL_W=16,QL_D=4,QG_SZ16=1]", nil},
		{"qglu.cu", "qglu4_w16d8_j_bf16", "qglu.cu", nil},
		{"qglu.cu", "qglu4_w16d8_k_bf16", "qglu.cu", nil},
		{"qglu.cu", "qglu8_w16d4_x_f16", "qglu.cu", nil},
		{"qglu.cu", "qglu3_w16d8_f16", "qglu.cu", nil},
		{"qglu.cu", "qglu8_w16d8_f64", "qglu.cu", nil},
		{"qglu.cu", "qglu8_f16", "qglu.cu", nil},
		{"qglu.cu", "qglu8_w16_f16", "qglu.cu", nil},
		{"qglu.cu", "qglu8_wd8_f16", "qglu.cu", nil},
		{"decode.cu", "paged_attn_c4_g4_f16", "decode.cu[PA_C=4,PA_G=4,KDT=1]", []string{"-DPA_C=4", "-DPA_G=4", "-DKDT=1"}},
		{"decode.cu", "paged_attn_c8_g1_f32", "decode.cu[PA_C=8,PA_G=1,KDT=0]", nil},
		{"decode.cu", "paged_attn_c4_g4_pre_f16", "decode.cu[PA_C=4,PA_G=4,KDT=1,PA_PRE=1]", []string{"-DPA_C=4", "-DPA_G=4", "-DKDT=1", "-DPA_PRE=1"}},
		{"decode.cu", "paged_attn_c2_g8_tc_bf16", "decode.cu[PA_C=2,PA_G=8,KDT=2,PA_TC=1]", []string{"-DPA_C=2", "-DPA_G=8", "-DKDT=2", "-DPA_TC=1"}},
		{"decode.cu", "paged_attn_c4_g4_tcpre_f16", "decode.cu[PA_C=4,PA_G=4,KDT=1,PA_PRE=1,PA_TC=1]", []string{"-DPA_C=4", "-DPA_G=4", "-DKDT=1", "-DPA_PRE=1", "-DPA_TC=1"}},
		{"decode.cu", "paged_attn_c4_g4_post_f16", "decode.cu", nil},
		{"decode.cu", "rope_store_bf16", "decode.cu[PA_C=0]", nil},
		// Outside the parts' naming: the whole file.
		{"qgemv.cu", "qmma3_t1_f16", "qgemv.cu", nil},
		{"qgemv.cu", "qmma4_t1_f64", "qgemv.cu", nil},
		{"qgemv.cu", "something_else", "qgemv.cu", nil},
		{"decode.cu", "paged_attn_cx_g4_f16", "decode.cu", nil},
		{"decode.cu", "paged_attn_c4_f16", "decode.cu", nil},
		{"norm.cu", "rmsnorm_f16", "norm.cu", nil},
		{"attention.cu", "", "attention.cu", nil},
		// head.cu: whole, for sm_90a.
		{"head.cu", "head_wg_t4_f16", "head.cu", nil},
		{"head.cu", "head_wg_t1_bf16", "head.cu", nil},
	}
	for n, want := range map[string]string{"qmma4_t1_g_f16+sz16": "qmma4_t1_g_f16", "qmma4_t1_g_f16": "qmma4_t1_g_f16", "rmsnorm_f16": "rmsnorm_f16"} {
		if s := Symbol(n); s != want {
			t.Errorf("Symbol(%q) = %q, want %q", n, s, want)
		}
	}
	for _, c := range cases {
		m := ModuleOf(c.file, c.name)
		if m.File != c.file || m.Key() != c.key {
			t.Errorf("ModuleOf(%q, %q) = %q, want %q", c.file, c.name, m.Key(), c.key)
		}
		if c.opts != nil && !slices.Equal(m.Options(), c.opts) {
			t.Errorf("ModuleOf(%q, %q).Options() = %q, want %q", c.file, c.name, m.Options(), c.opts)
		}
		if c.key == c.file && len(m.Options()) != 0 {
			t.Errorf("ModuleOf(%q, %q): a whole file has no options, got %q", c.file, c.name, m.Options())
		}
		// Only the warpgroup-MMA part and head.cu compile for sm_90a.
		wantArch := "90"
		if strings.Contains(c.key, "QG_WG=") || c.file == "head.cu" {
			wantArch = "90a"
		}
		if a := m.Arch(90); a != wantArch {
			t.Errorf("ModuleOf(%q, %q).Arch(90) = %q, want %q", c.file, c.name, a, wantArch)
		}
	}
}
