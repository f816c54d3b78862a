package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/quantpack"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// TestCPUQuantExact stores openchat-tiny's Linears quantized (random codes
// drawn by quantpack, packed by package gptq) at every bit width, group
// sizes 32, 128 and -1, sym and asym, with and without act order, and
// checks that the CPU backend's packed weights (the default in F32) give
// the logits of the dequantized fp32 weights (Options.Dequantize) bit for
// bit, for one row, two and three (decode steps' products, which read
// the panels directly), a short prompt (rows in triples and singles) and
// one longer than a row block of the packed product; and that the packed
// weights take their packed size in memory (Backend.Resident), not fp32's.
func TestCPUQuantExact(t *testing.T) {
	base := fixture(t, "models/openchat-tiny")
	set, cfg := fixtures.OpenCheckpoint(t, base)
	set.Close()
	linears, err := QuantLinears(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wiki := fixtures.WikiIDs(t)
	prompts := [][]int{{1}, {1, 420}, {1, 420, 6316}, {1, 420, 6316, 28781, 7}, wiki[:200]}
	for _, tc := range []struct {
		bits, gs      int
		sym, actOrder bool
	}{
		{4, 128, false, true},
		{4, 128, true, false},
		{4, 32, false, true},
		{4, -1, false, false},
		{8, 128, true, false},
		{8, 32, false, true},
		{3, 128, false, true},
		{3, 32, true, false},
		{2, 32, false, false},
		{2, 128, true, true},
	} {
		name := fmt.Sprintf("%dbit_g%d_sym%v_act%v", tc.bits, tc.gs, tc.sym, tc.actOrder)
		t.Run(name, func(t *testing.T) {
			if testing.Short() && tc.bits != 4 {
				t.Skip("short: 4-bit only")
			}
			mods := quantpack.Draw(11, linears, tc.bits, tc.gs, tc.sym, tc.actOrder)
			dir := filepath.Join(t.TempDir(), "gptq")
			// GPTQ v1 stores zero−1: v2 where a zero point is 0.
			block := map[string]any{"quant_method": "gptq", "bits": tc.bits, "group_size": tc.gs, "desc_act": tc.actOrder, "sym": tc.sym}
			format := gptq.FormatV1
			if !tc.sym {
				block["checkpoint_format"], format = "gptq_v2", gptq.FormatV2
			}
			quantpack.Write(t, base, dir, block, nil, mods, func(m quantpack.Module) []safetensors.Tensor { return quantpack.GPTQ(m, format) })
			load := func(dequant bool) (*Model, *cpu.Backend) {
				b := cpu.New(0)
				m, err := LoadWith(dir, b, Options{Dequantize: dequant})
				if err != nil {
					t.Fatal(err)
				}
				return m, b
			}
			packed, pb := load(false)
			defer packed.Close()
			ref, rb := load(true)
			defer ref.Close()

			// Memory: the models differ in their Linears only.
			var fp32, want int64
			for _, l := range linears {
				G := int64(gptq.Groups(l.K, tc.gs))
				fp32 += 4 * int64(l.K*l.N)
				// The row layout's blocks of 32 codes; the panel layout
				// takes as much where 32 divides K, as in openchat-tiny.
				want += int64((l.K+31)/32*4*tc.bits*l.N) + 4*G*int64(l.N)
				if tc.actOrder {
					want += 4 * int64(l.K) // each input's group
				}
			}
			other := rb.Resident() - fp32
			if got := pb.Resident() - other; got != want {
				t.Errorf("packed Linears take %d bytes, want %d (fp32: %d)", got, want, fp32)
			}

			for _, ids := range prompts {
				got, err := packed.Forward(ids, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				want, err := ref.Forward(ids, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%d tokens: logit %d of row %d: packed %v, dequantized %v", len(ids), i%cfg.VocabSize, i/cfg.VocabSize, got[i], want[i])
					}
				}
			}
		})
	}
}

// TestCPUWeight16Exact checks that the CPU backend's 16-bit Linear
// weights (runtime.WeightLoader, the default for an F16 or BF16
// checkpoint in F32) give the logits of the weights converted to fp32 at
// load (Options.WidenWeights) bit for bit, on openchat-tiny (F16) and a
// BF16 model of its shape, and take 2 bytes a weight (Resident).
func TestCPUWeight16Exact(t *testing.T) {
	src := fixture(t, "models/openchat-tiny")
	bf16 := filepath.Join(t.TempDir(), "bf16")
	if _, err := synth.Write(context.Background(), synth.Options{ConfigDir: src, Out: bf16, Layers: 2, Seed: 5, DType: "bf16", Shards: 1}); err != nil {
		t.Fatal(err)
	}
	prompts := [][]int{{1, 420, 6316, 28781, 7}, fixtures.WikiIDs(t)[:200]}
	for _, dir := range []string{src, bf16} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			cfg, err := hfconfig.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			linears, err := QuantLinears(cfg)
			if err != nil {
				t.Fatal(err)
			}
			load := func(widen bool) (*Model, *cpu.Backend) {
				b := cpu.New(0)
				m, err := LoadWith(dir, b, Options{WidenWeights: widen})
				if err != nil {
					t.Fatal(err)
				}
				return m, b
			}
			kept, kb := load(false)
			defer kept.Close()
			ref, rb := load(true)
			defer ref.Close()
			var weights int64
			for _, l := range linears {
				weights += int64(l.K * l.N)
			}
			other := rb.Resident() - 4*weights
			if got := kb.Resident() - other; got != 2*weights {
				t.Errorf("16-bit Linears take %d bytes, want %d (fp32: %d)", got, 2*weights, 4*weights)
			}
			for _, ids := range prompts {
				got, err := kept.Forward(ids, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				want, err := ref.Forward(ids, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%d tokens: logit %d of row %d: 16-bit %v, fp32 %v", len(ids), i%cfg.VocabSize, i/cfg.VocabSize, got[i], want[i])
					}
				}
			}
		})
	}
}

// TestCPUQuantTiles checks the CPU backend's packed weights against GPTQ's
// own dequantization (gptq.Linear.Dequantize), bit for bit, at shapes
// whose inputs are not a multiple of the tiles (K past one slice of 1024
// inputs by a part of a 32-code block; group sizes that divide neither;
// outputs not a multiple of 32):
// the expanded weight (Download) and the products for 1, 5 and 200 rows.
func TestCPUQuantTiles(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, c := range []struct {
		K, N, bits, gs int
		format         gptq.Format
		gidx           string
	}{
		{1064, 40, 4, 100, gptq.FormatV1, "act-order"},
		{1064, 40, 4, 56, gptq.FormatV2, "static"},
		{1064, 44, 8, -1, gptq.FormatV2, "static"},
		{1056, 36, 8, 96, gptq.FormatV1, "act-order"},
		{1056, 96, 3, 160, gptq.FormatV2, "act-order"},
		{1056, 96, 3, 48, gptq.FormatV1, "static"},
		{1040, 48, 2, 40, gptq.FormatV2, "act-order"},
		{1040, 48, 2, -1, gptq.FormatV1, "static"},
	} {
		name := fmt.Sprintf("%dbit_K%d_N%d_g%d_%s", c.bits, c.K, c.N, c.gs, c.gidx)
		t.Run(name, func(t *testing.T) {
			l := randomLinear(r, c.K, c.N, c.bits, c.gs, c.format, c.gidx)
			want, err := l.Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			q, err := Sequential(l)
			if err != nil || q == nil {
				t.Fatalf("sequential: %v, %v", q, err)
			}
			b := cpu.New(3)
			w, err := b.LoadQuant(q)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, c.N*c.K)
			if err := b.Download(got, w); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("W[%d, %d] = %v, want %v", i/c.K, i%c.K, got[i], want[i])
				}
			}
			dense, err := b.Alloc(runtime.F32, c.N, c.K)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Upload(dense, want); err != nil {
				t.Fatal(err)
			}
			for _, m := range []int{1, 5, 200} {
				xv := make([]float32, m*c.K)
				for i := range xv {
					xv[i] = float32(r.NormFloat64())
				}
				x, _ := b.Alloc(runtime.F32, m, c.K)
				if err := b.Upload(x, xv); err != nil {
					t.Fatal(err)
				}
				yq, _ := b.Alloc(runtime.F32, m, c.N)
				yd, _ := b.Alloc(runtime.F32, m, c.N)
				b.MatMul(yq, x, w)
				b.MatMul(yd, x, dense)
				gq, gd := make([]float32, m*c.N), make([]float32, m*c.N)
				if err := b.Download(gq, yq); err != nil {
					t.Fatal(err)
				}
				if err := b.Download(gd, yd); err != nil {
					t.Fatal(err)
				}
				for i := range gd {
					if math.Float32bits(gq[i]) != math.Float32bits(gd[i]) {
						t.Fatalf("%d rows: y[%d, %d] = %v, want %v", m, i/c.N, i%c.N, gq[i], gd[i])
					}
				}
			}
		})
	}
}
