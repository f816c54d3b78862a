package gguf

import (
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// handQ5K is handQ4K's header and quants with a qh of fifth bits: 0x0F for
// l < 16 (the fifth bits of chunks 0 and 1), 0xF0 for l >= 16 (chunks 2
// and 3), placed between the scales and the quants (ggml-common.h
// block_q5_K: d, dmin, scales[12], qh[32], qs[128]).
func handQ5K() (blk []byte, sc, m [8]float32) {
	q4, sc, m := handQ4K()
	blk = append([]byte{}, q4[:16]...)
	for l := range 32 {
		blk = append(blk, map[bool]byte{true: 0x0F, false: 0xF0}[l < 16])
	}
	return append(blk, q4[16:]...), sc, m
}

func TestDequantizeQ5_KHand(t *testing.T) {
	blk, _, _ := handQ5K()
	if len(blk) != BlockBytesQ5_K {
		t.Fatalf("hand block has %d bytes, want %d", len(blk), BlockBytesQ5_K)
	}
	got := make([]float32, 256)
	DequantizeQ5_K(got, blk)
	// Worked by hand: x = d·sc_j·q − dmin·m_j, q = nibble + 16·(fifth bit:
	// bit 2c of qh[l] for the low nibbles of chunk c, bit 2c+1 for the high).
	for _, s := range []struct {
		pos  int
		want float32
	}{
		{5, 1*(5+16) - 2.5},     // chunk 0 low, qs[5] = 5, qh[5] = 0x0F bit 0
		{40, 2*(0+16) - 3},      // chunk 0 high (sub-block 1), qs[8] >> 4 = 0, qh[8] bit 1
		{130, 17*2 - 10},        // chunk 2 low (sub-block 4), qs[66] & 15 = 2, qh[2] = 0x0F bit 4 clear
		{150, 17*(6+16) - 10},   // chunk 2 low, qs[86] & 15 = 6, qh[22] = 0xF0 bit 4
		{200, 51*8 - 30},        // chunk 3 low (sub-block 6), qs[104] & 15 = 8, qh[8] bit 6 clear
		{255, 63*(7+16) - 16.5}, // chunk 3 high (sub-block 7), qs[127] >> 4 = 7, qh[31] = 0xF0 bit 7
	} {
		if got[s.pos] != s.want {
			t.Errorf("value %d = %g, want %g", s.pos, got[s.pos], s.want)
		}
	}
}

// handQ6K is a Q6_K block built byte by byte (ggml-common.h block_q6_K:
// ql[128], qh[64], scales[16] int8, d fp16): ql[k] = k, qh[k] = k,
// scales[j] = j − 8, d = 0.5 (fp16 0x3800).
func handQ6K() []byte {
	var blk []byte
	for k := range 128 {
		blk = append(blk, byte(k))
	}
	for k := range 64 {
		blk = append(blk, byte(k))
	}
	for j := range 16 {
		blk = append(blk, byte(int8(j-8)))
	}
	return append(blk, 0x00, 0x38)
}

func TestDequantizeQ6_KHand(t *testing.T) {
	blk := handQ6K()
	if len(blk) != BlockBytesQ6_K {
		t.Fatalf("hand block has %d bytes, want %d", len(blk), BlockBytesQ6_K)
	}
	got := make([]float32, 256)
	DequantizeQ6_K(got, blk)
	// Worked by hand: value p of half h = p/128, quarter i = p%128/32,
	// lane l = p%32: low 4 bits from nibble i/2 of ql[64h+32(i%2)+l], high
	// 2 bits from bits 2i, 2i+1 of qh[32h+l], scale scales[8h+l/16+2i];
	// x = d·scale·(q − 32).
	for _, s := range []struct {
		pos  int
		want float32
	}{
		{0, 0.5 * -8 * (0 - 32)},      // ql[0] = 0, qh[0] = 0, scales[0] = -8
		{100, 0.5 * -2 * (2 - 32)},    // i 3, l 4: ql[36] = 0x24 high nibble 2, qh[4] = 4 bits 6-7 = 0, scales[6] = -2
		{17, 0.5 * -7 * (17 - 32)},    // i 0, l 17: ql[17] = 0x11 low 1, qh[17] = 17 bits 0-1 = 1: q = 1 + 16, scales[1] = -7
		{200, 0.5 * 4 * (36 - 32)},    // h 1, i 2, l 8: ql[72] = 0x48 high 4, qh[40] = 40 bits 4-5 = 2: q = 4 + 32, scales[12] = 4
		{255, 0.5 * 7 * (7 + 0 - 32)}, // h 1, i 3, l 31: ql[127] = 0x7F high 7, qh[63] = 63 bits 6-7 = 0, scales[15] = 7
	} {
		if got[s.pos] != s.want {
			t.Errorf("value %d = %g, want %g", s.pos, got[s.pos], s.want)
		}
	}
}

// TestKQuantRoundTrip: Q5_K and Q6_K reproduce Gaussian weights with the
// error their levels allow, each value within half a step of its decoded
// grid (inside the grid's range), and more bits give less error.
func TestKQuantRoundTrip(t *testing.T) {
	x := gaussian(2, 256*256, 0.02)
	errs := map[TensorType]float64{}
	for _, typ := range []TensorType{TypeQ4_K, TypeQ5_K, TypeQ6_K} {
		q, y := roundTrip(t, typ, x, nil)
		errs[typ] = nmse(y, x)
		bb := typ.BlockBytes()
		for b := 0; b < len(q)/bb; b++ {
			blk := q[b*bb : (b+1)*bb]
			// grid gives value i's step and the range of its sub-block.
			var grid func(i int) (step, lo, hi float64)
			switch typ {
			case TypeQ5_K, TypeQ4_K:
				d, dmin := float64(f16(blk[0:])), float64(f16(blk[2:]))
				levels := map[TensorType]float64{TypeQ4_K: 15, TypeQ5_K: 31}[typ]
				grid = func(i int) (float64, float64, float64) {
					sc, m := scaleMinK4(i/32, blk[4:16])
					step, lo := d*float64(sc), -dmin*float64(m)
					return step, lo, lo + levels*step
				}
			case TypeQ6_K:
				d := float64(f16(blk[208:]))
				grid = func(i int) (float64, float64, float64) {
					step := d * float64(int8(blk[192+i/16]))
					lo, hi := -32*step, 31*step
					return math.Abs(step), min(lo, hi), max(lo, hi)
				}
			}
			for i := range 256 {
				step, lo, hi := grid(i)
				v := float64(x[256*b+i])
				dist := math.Max(0, math.Max(lo-v, v-hi))
				if e := math.Abs(float64(y[256*b+i]) - v); e > dist+step/2*(1+1e-5)+1e-9 {
					t.Fatalf("%s block %d value %d: error %g > half step %g + outside distance %g", typ, b, i, e, step/2, dist)
				}
			}
		}
	}
	t.Logf("NMSE Q4_K %.3g, Q5_K %.3g, Q6_K %.3g", errs[TypeQ4_K], errs[TypeQ5_K], errs[TypeQ6_K])
	// 32 levels over a Gaussian sub-block of 32 values (range ≈ 4σ) give
	// NMSE ≈ (4/31)²/12 ≈ 1.4e-3; 64 symmetric levels over 16 values whose
	// largest is ≈ 2σ give ≈ (4/63)²/12 ≈ 3.4e-4.
	for typ, bound := range map[TensorType]float64{TypeQ5_K: 2e-3, TypeQ6_K: 5e-4} {
		if errs[typ] > bound {
			t.Errorf("%s NMSE %.3g, want < %g", typ, errs[typ], bound)
		}
	}
	if !(errs[TypeQ6_K] < errs[TypeQ5_K]/2 && errs[TypeQ5_K] < errs[TypeQ4_K]/2) {
		t.Errorf("NMSE does not fall with the bits: Q4_K %.3g, Q5_K %.3g, Q6_K %.3g", errs[TypeQ4_K], errs[TypeQ5_K], errs[TypeQ6_K])
	}
}

// TestQ6_KZeroBlock: a super-block of zeros (or below ggml's 1e-15) is
// written as zeros and decodes to zeros.
func TestQ6_KZeroBlock(t *testing.T) {
	x := make([]float32, 512)
	x[300] = 1e-16
	q, err := Encode(TypeQ6_K, x)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range q {
		if b != 0 {
			t.Fatalf("byte %d = %d, want 0", i, b)
		}
	}
}

// TestMixTypes: the mixes give a 7B Mistral (openchat-3.5-1210's config:
// 32 layers, 4 query heads per KV head) the tensor counts that llama.cpp's
// loader prints for llama-quantize's files of Mistral-7B and Llama-3-8B,
// the same layout (e.g. Q4_K_M: "type q4_K: 193 tensors, type q6_K: 33
// tensors"; Q3_K_M: q3_K 129, q4_K 92, q5_K 4, q6_K 1; Q2_K: q2_K 129,
// q3_K 64, q4_K 32, q6_K 1; the 65 F32 norms aside), and with an
// importance matrix the counts its rules (llama_tensor_get_type) give.
func TestMixTypes(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "fixtures", "configs", "openchat-3.5-1210")
	if d := os.Getenv("GPTQTOOL_FIXTURES"); d != "" {
		dir = filepath.Join(d, "configs", "openchat-3.5-1210")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("fixture %s missing: %v", dir, err)
	}
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mix     string
		imatrix bool
		want    map[TensorType]int
	}{
		{"Q4_0", false, map[TensorType]int{TypeQ4_0: 225, TypeQ6_K: 1}},
		{"Q4_0", true, map[TensorType]int{TypeQ4_0: 221, TypeQ4_1: 4, TypeQ6_K: 1}},
		{"Q4_1", false, map[TensorType]int{TypeQ4_1: 225, TypeQ6_K: 1}},
		{"Q5_0", false, map[TensorType]int{TypeQ5_0: 225, TypeQ6_K: 1}},
		{"Q5_0", true, map[TensorType]int{TypeQ5_0: 221, TypeQ5_1: 4, TypeQ6_K: 1}},
		{"Q5_1", true, map[TensorType]int{TypeQ5_1: 225, TypeQ6_K: 1}},
		{"Q2_K", false, map[TensorType]int{TypeQ2_K: 129, TypeQ3_K: 64, TypeQ4_K: 32, TypeQ6_K: 1}},
		{"Q2_K_S", true, map[TensorType]int{TypeQ2_K: 189, TypeQ4_K: 36, TypeQ6_K: 1}},
		{"Q3_K_S", false, map[TensorType]int{TypeQ3_K: 225, TypeQ6_K: 1}},
		{"Q3_K_M", false, map[TensorType]int{TypeQ3_K: 129, TypeQ4_K: 92, TypeQ5_K: 4, TypeQ6_K: 1}},
		{"Q3_K_L", false, map[TensorType]int{TypeQ3_K: 129, TypeQ5_K: 96, TypeQ6_K: 1}},
		{"Q4_K_S", false, map[TensorType]int{TypeQ4_K: 217, TypeQ5_K: 8, TypeQ6_K: 1}},
		{"Q4_K_M", false, map[TensorType]int{TypeQ4_K: 193, TypeQ6_K: 33}},
		{"Q4_K_M", true, map[TensorType]int{TypeQ4_K: 193, TypeQ6_K: 33}},
		{"Q5_K_S", false, map[TensorType]int{TypeQ5_K: 225, TypeQ6_K: 1}},
		{"Q5_K_M", false, map[TensorType]int{TypeQ5_K: 193, TypeQ6_K: 33}},
		{"q6_k", false, map[TensorType]int{TypeQ6_K: 226}},
		{"IQ4_NL", false, map[TensorType]int{TypeIQ4_NL: 189, TypeQ5_K: 36, TypeQ6_K: 1}},
		{"IQ4_NL", true, map[TensorType]int{TypeIQ4_NL: 193, TypeQ5_K: 32, TypeQ6_K: 1}},
		{"IQ4_XS", false, map[TensorType]int{TypeIQ4_XS: 189, TypeQ5_K: 36, TypeQ6_K: 1}},
		// IQ3_XXS: token_embd IQ3_S, output Q5_K, attn_q and attn_k IQ2_S,
		// attn_v Q4_K (4 query heads a KV head), attn_output IQ3_S, and
		// ffn_down IQ3_XXS with an importance matrix, else Q4_K in the
		// first eighth of the layers and Q3_K after.
		{"IQ3_XXS", true, map[TensorType]int{TypeIQ3_XXS: 96, TypeIQ2_S: 64, TypeIQ3_S: 33, TypeQ4_K: 32, TypeQ5_K: 1}},
		{"IQ3_XXS", false, map[TensorType]int{TypeIQ3_XXS: 64, TypeIQ2_S: 64, TypeIQ3_S: 33, TypeQ4_K: 36, TypeQ3_K: 28, TypeQ5_K: 1}},
		// IQ3_XS: attn_q and attn_k IQ3_XXS, ffn_gate and ffn_up IQ3_XXS
		// in layers 4..27 (IQ3_S in the first and last 4), attn_v Q4_K,
		// the rest IQ3_S.
		{"IQ3_XS", true, map[TensorType]int{TypeIQ3_XXS: 112, TypeIQ3_S: 81, TypeQ4_K: 32, TypeQ6_K: 1}},
		{"IQ3_S", false, map[TensorType]int{TypeIQ3_S: 193, TypeQ4_K: 32, TypeQ6_K: 1}},
		// IQ3_M: attn_v and attn_output Q4_K, ffn_down Q4_K in layers 0..3.
		{"IQ3_M", false, map[TensorType]int{TypeIQ3_S: 157, TypeQ4_K: 68, TypeQ6_K: 1}},
		// The 2-bit IQ file types, by llama_tensor_get_type_impl's rules
		// for them: attn_v Q4_K (4 query heads a KV head), the first 4
		// ffn_down and token_embd in Q2_K (IQ2_S, IQ2_M: IQ3_S, as every
		// attn_output), the output in Q5_K.
		{"IQ2_XXS", true, map[TensorType]int{TypeIQ2_XXS: 188, TypeQ2_K: 5, TypeQ4_K: 32, TypeQ5_K: 1}},
		{"IQ2_XS", true, map[TensorType]int{TypeIQ2_XS: 188, TypeQ2_K: 5, TypeQ4_K: 32, TypeQ5_K: 1}},
		{"IQ2_S", true, map[TensorType]int{TypeIQ2_XS: 156, TypeIQ3_S: 37, TypeQ4_K: 32, TypeQ5_K: 1}},
		{"IQ2_M", true, map[TensorType]int{TypeIQ2_S: 156, TypeIQ3_S: 37, TypeQ4_K: 32, TypeQ5_K: 1}},
		// The 1-bit ones: as IQ2_XXS's, attn_output in IQ2_XXS.
		{"IQ1_S", true, map[TensorType]int{TypeIQ1_S: 156, TypeIQ2_XXS: 32, TypeQ2_K: 5, TypeQ4_K: 32, TypeQ5_K: 1}},
		{"IQ1_M", true, map[TensorType]int{TypeIQ1_M: 156, TypeIQ2_XXS: 32, TypeQ2_K: 5, TypeQ4_K: 32, TypeQ5_K: 1}},
	} {
		m, ok := ParseMix(tc.mix)
		if !ok {
			t.Fatalf("ParseMix(%q) found nothing", tc.mix)
		}
		got := map[TensorType]int{}
		for _, s := range tensorSpecs(cfg) {
			if len(s.shape) == 2 {
				typ, fb := weightType(m.typeFor(s.name, cfg, tc.imatrix), s)
				if fb != nil {
					t.Errorf("%s: %s falls back: %s", tc.mix, s.name, fb.Reason)
				}
				got[typ]++
			}
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s (imatrix %v): %v, want %v", tc.mix, tc.imatrix, got, tc.want)
		}
		for typ, n := range tc.want {
			if got[typ] != n {
				t.Errorf("%s (imatrix %v): %v, want %v", tc.mix, tc.imatrix, got, tc.want)
				break
			}
		}
	}
	// The _M mixes' layers, by llama.cpp's use_more_bits for 32 layers:
	// the first and last 4, and every third from 6.
	m, _ := ParseMix("Q4_K_M")
	var more []int
	for i := range 32 {
		if m.typeOf("blk."+strconv.Itoa(i)+".ffn_down.weight", site{i: i, n: 32, gqa: 4}, true, 4096) == TypeQ6_K {
			more = append(more, i)
		}
	}
	if want := []int{0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}; !slices.Equal(more, want) {
		t.Errorf("Q4_K_M ffn_down in Q6_K in layers %v, want %v", more, want)
	}
}

// TestFileTypeName: llama.h's llama_ftype values by name.
func TestFileTypeName(t *testing.T) {
	for id, want := range map[uint32]string{0: "F32", 1: "F16", 2: "Q4_0", 7: "Q8_0", 10: "Q2_K", 12: "Q3_K_M", 14: "Q4_K_S", 15: "Q4_K_M", 17: "Q5_K_M", 18: "Q6_K", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 26: "IQ3_S", 27: "IQ3_M", 30: "IQ4_XS", 32: "BF16",
		19: "IQ2_XXS", 20: "IQ2_XS", 28: "IQ2_S", 29: "IQ2_M", 24: "IQ1_S", 31: "IQ1_M", 36: ""} {
		if got := FileTypeName(id); got != want {
			t.Errorf("FileTypeName(%d) = %q, want %q", id, got, want)
		}
	}
}

// TestMixesWritten: every type a mix's rules give (with and without an
// importance matrix, with and without grouped-query attention, untied and
// tied, 70B included) is one this package writes: plan's refusal of a type
// not written is a guard no mix reaches.
func TestMixesWritten(t *testing.T) {
	kinds := []string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}
	for _, m := range Mixes {
		for _, cfg := range []*hfconfig.Config{
			{NumHiddenLayers: 32, NumAttentionHeads: 32, NumKeyValueHeads: 8, HiddenSize: 4096},
			{NumHiddenLayers: 80, NumAttentionHeads: 64, NumKeyValueHeads: 8, HiddenSize: 8192},
			{NumHiddenLayers: 6, NumAttentionHeads: 2, NumKeyValueHeads: 2, HiddenSize: 256, TieWordEmbeddings: true},
		} {
			names := []string{"token_embd.weight", "output.weight"}
			for i := range cfg.NumHiddenLayers {
				for _, k := range kinds {
					names = append(names, fmt.Sprintf("blk.%d.%s.weight", i, k))
				}
			}
			for _, imatrix := range []bool{false, true} {
				for _, name := range names {
					if typ := m.typeFor(name, cfg, imatrix); !typ.Convertible() {
						t.Errorf("%s (%d layers, imatrix %v): %s in %s, which this package does not write", m.Name, cfg.NumHiddenLayers, imatrix, name, typ)
					}
				}
			}
		}
	}
}

// TestMix70B: llama.cpp's LLM_TYPE_70B (80 layers, grouped-query
// attention: Llama-2/3 70B) raises attn_v from Q4_K to Q5_K after the
// mixes' rules; 80 layers without GQA (LLaMA-1 65B) and other tensors keep
// the rules' types, as do the 1- and 2-bit IQ file types, whose own rules
// come before that one in llama_tensor_get_type_impl.
func TestMix70B(t *testing.T) {
	gqa := &hfconfig.Config{NumHiddenLayers: 80, NumAttentionHeads: 64, NumKeyValueHeads: 8}
	mha := &hfconfig.Config{NumHiddenLayers: 80, NumAttentionHeads: 64, NumKeyValueHeads: 64}
	for _, tc := range []struct {
		mix, name string
		cfg       *hfconfig.Config
		want      TensorType
	}{
		{"Q4_K_M", "blk.11.attn_v.weight", gqa, TypeQ5_K},   // use_more_bits false: Q4_K, raised
		{"Q4_K_M", "blk.0.attn_v.weight", gqa, TypeQ6_K},    // use_more_bits
		{"Q4_K_M", "blk.11.ffn_down.weight", gqa, TypeQ4_K}, // ffn_down: no 70B rule
		{"Q4_K_M", "blk.11.attn_v.weight", mha, TypeQ4_K},   // 65B
		{"Q4_K_S", "blk.40.attn_v.weight", gqa, TypeQ5_K},
		{"Q4_K_S", "blk.40.attn_q.weight", gqa, TypeQ4_K},
		{"Q5_K_M", "blk.11.attn_v.weight", gqa, TypeQ5_K},
		{"Q6_K", "blk.1.attn_v.weight", gqa, TypeQ6_K},
		{"Q3_K_S", "blk.40.attn_v.weight", gqa, TypeQ5_K}, // Q3_K raised too
		{"Q3_K_S", "blk.40.attn_v.weight", mha, TypeQ3_K},
		{"Q3_K_M", "blk.1.attn_v.weight", gqa, TypeQ5_K},
		{"Q3_K_M", "blk.40.attn_v.weight", gqa, TypeQ5_K}, // Q4_K, raised
		{"Q3_K_M", "blk.40.attn_v.weight", mha, TypeQ4_K},
		{"Q2_K", "blk.40.attn_v.weight", gqa, TypeQ5_K}, // 8 heads a KV head: Q4_K, raised
		{"Q2_K", "blk.40.attn_v.weight", mha, TypeQ3_K}, // no GQA: Q3_K
		{"Q2_K", "blk.40.attn_output.weight", gqa, TypeQ3_K},
		{"IQ4_XS", "blk.40.attn_v.weight", gqa, TypeQ5_K},
		{"IQ4_XS", "blk.40.attn_v.weight", mha, TypeIQ4_XS},
		{"IQ3_S", "blk.40.attn_v.weight", gqa, TypeQ5_K}, // Q4_K, raised
		{"IQ3_S", "blk.40.attn_v.weight", mha, TypeIQ3_S},
		{"IQ3_M", "blk.40.attn_v.weight", mha, TypeQ4_K},
		{"IQ3_M", "blk.40.attn_v.weight", gqa, TypeQ5_K},
		{"IQ3_XXS", "blk.40.attn_v.weight", mha, TypeIQ3_S}, // no importance matrix
		{"IQ3_XXS", "blk.40.attn_k.weight", gqa, TypeIQ2_S},
		{"IQ3_XS", "blk.40.ffn_up.weight", gqa, TypeIQ3_XXS},
		{"IQ3_XS", "blk.75.ffn_up.weight", gqa, TypeIQ3_S},
		// The 2-bit IQ file types' rules come before the 70B one.
		{"IQ2_XXS", "blk.40.attn_v.weight", gqa, TypeQ4_K},
		{"IQ2_XXS", "blk.40.attn_v.weight", mha, TypeQ2_K},
		{"IQ2_M", "blk.40.attn_v.weight", gqa, TypeQ4_K},
		{"IQ2_S", "blk.40.attn_v.weight", mha, TypeIQ3_S},
		{"IQ1_M", "blk.40.attn_v.weight", gqa, TypeQ4_K},
		{"IQ1_S", "blk.40.attn_output.weight", gqa, TypeIQ2_XXS},
	} {
		m, _ := ParseMix(tc.mix)
		if got := m.typeFor(tc.name, tc.cfg, false); got != tc.want {
			t.Errorf("%s %s (%d heads, %d KV heads): %s, want %s", tc.mix, tc.name, tc.cfg.NumAttentionHeads, tc.cfg.NumKeyValueHeads, got, tc.want)
		}
	}
}

// TestParseTarget: the uniform type names give one type for every weight,
// llama-quantize's file type names their mixes (q4_0 among them, whose
// output weight llama-quantize writes in Q6_K), anything else an error
// naming what is accepted.
func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		typ  TensorType
		mix  string
		file uint32
	}{
		{"f16", TypeF16, "", 1},
		{"Q8_0", TypeQ8_0, "", 7},
		{"q4_k", TypeQ4_K, "", 14},
		{"q6_k", TypeQ6_K, "", 18},
		{"q4_0", 0, "Q4_0", 2},
		{"Q2_K", 0, "Q2_K", 10},
		{"q3_k_m", 0, "Q3_K_M", 12},
		{"iq4_xs", 0, "IQ4_XS", 30},
		{"iq3_xxs", 0, "IQ3_XXS", 23},
		{"IQ3_XS", 0, "IQ3_XS", 22},
		{"iq3_s", 0, "IQ3_S", 26},
		{"iq3_m", 0, "IQ3_M", 27},
		{"iq2_xxs", 0, "IQ2_XXS", 19},
		{"IQ2_XS", 0, "IQ2_XS", 20},
		{"iq2_s", 0, "IQ2_S", 28},
		{"iq2_m", 0, "IQ2_M", 29},
		{"iq1_s", 0, "IQ1_S", 24},
		{"IQ1_M", 0, "IQ1_M", 31},
	} {
		got, err := ParseTarget(tc.in)
		if err != nil || got.Type != tc.typ || got.Mix.Name != tc.mix {
			t.Errorf("ParseTarget(%q) = %v, %q, %v; want %v, %q", tc.in, got.Type, got.Mix.Name, err, tc.typ, tc.mix)
		}
		file := fileTypes[got.Type]
		if tc.mix != "" {
			file = got.Mix.FileType
		}
		if file != tc.file {
			t.Errorf("%s: file type %d, want %d", tc.in, file, tc.file)
		}
	}
	for _, bad := range []string{"", "q4_k_x", "tq1_0", "q8_k"} {
		if _, err := ParseTarget(bad); err == nil || !strings.Contains(err.Error(), "q3_k_m") {
			t.Errorf("ParseTarget(%q): %v, want an error listing the types", bad, err)
		}
	}
	ts, err := ParseTargets("q4_k_m, Q8_0,q3_k_s")
	if err != nil || len(ts) != 3 || ts[0].Name() != "Q4_K_M" || ts[1].Name() != "Q8_0" || ts[2].Name() != "Q3_K_S" {
		t.Errorf("ParseTargets: %v, %v", ts, err)
	}
	for _, bad := range []string{"q4_k_m,Q4_K_M", "q4_k_m,", "q4_k_m,q9"} {
		if _, err := ParseTargets(bad); err == nil {
			t.Errorf("ParseTargets(%q) succeeded", bad)
		}
	}
}

// TestQ4_KQ5_KWeightedSearchIsQKX3: quantize_row_q4_K_impl and
// quantize_row_q5_K_impl search each sub-block with make_qkx3_quants, as
// Q2_K's does (TestQ2_KWeightedSearchIsQKX3): sub-block 0 holds two
// weighted values a few ulps apart at the top and thirty unweighted ones
// far below, so a candidate min lands next to the maximum and the next
// candidates scale the others beyond nearest_int's range. Want: the first
// 16 hex digits of the SHA-256 of the block ggml-quants.c (llama.cpp
// 01243c5) gives, built with gcc -O2 -ffp-contract=off -DNDEBUG
// (make_qkx2_quants' rounding gives b106a1796d97e558 and
// 1684c092124af10a).
func TestQ4_KQ5_KWeightedSearchIsQKX3(t *testing.T) {
	for _, tc := range []struct {
		typ        TensorType
		lo, xa, xb float32
		want       string
	}{
		{TypeQ4_K, -13.165151, -0.42889258, -0.42889273, "2afc11a26d607c02"},
		{TypeQ5_K, -3.934238, -0.29632676, -0.29632682, "21112087aa55d7d0"},
	} {
		x := gaussian(9, 256, 0.5)
		qw := make([]float32, 256)
		for i := range qw {
			qw[i] = 1
		}
		for i := range 32 {
			x[i], qw[i] = tc.lo, 0
		}
		x[3], qw[3] = tc.xa, 1
		x[9], qw[9] = tc.xb, 1
		got, err := EncodeWeighted(tc.typ, x, 256, qw)
		if err != nil {
			t.Fatal(err)
		}
		if sum := fmt.Sprintf("%x", sha256.Sum256(got))[:16]; sum != tc.want {
			t.Errorf("%s: sha256 %s, ggml's %s", tc.typ, sum, tc.want)
		}
	}
}
