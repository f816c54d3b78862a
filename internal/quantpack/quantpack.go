// Package quantpack writes test checkpoints of one model quantized three
// ways, GPTQ, AWQ (AutoAWQ gemm) and compressed-tensors (pack-quantized),
// from the same codes, zero points and scales, with packers written here
// from each format's own description (AutoAWQ's WQLinear_GEMM.from_linear
// and AWQ_ORDER; compressed-tensors' pack_to_int32), independent of the
// readers under test (formats/awq, formats/compressed, formats/quantized).
// The GPTQ checkpoints use package gptq's packers, the reference those
// readers are compared against.
package quantpack

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// Module is one quantized Linear's values: W[n, k] = Scales[g][n] ·
// (Q[k][n] − Z[g][n]), g = GIdx[k] (GIdx nil: k/GroupSize).
type Module struct {
	Name       string
	K, N, Bits int
	GroupSize  int      // -1: one group
	Q          []uint8  // [K, N] unsigned codes
	Z          []uint8  // [G, N] real zero points
	Scales     []uint16 // [G, N] fp16 bits
	GIdx       []int32  // [K] or nil
	Sym        bool     // Z is 2^(Bits-1) everywhere
}

// G is the number of groups.
func (m Module) G() int { return gptq.Groups(m.K, m.GroupSize) }

// group is input k's group.
func (m Module) group(k int) int {
	if m.GIdx != nil {
		return int(m.GIdx[k])
	}
	if m.GroupSize == -1 {
		return 0
	}
	return k / m.GroupSize
}

// Dequantize returns W [N, K] float32 from the values, as every format's
// reference computes it (fp32 product of the fp16 scale and the integer
// difference).
func (m Module) Dequantize() []float32 {
	w := make([]float32, m.N*m.K)
	for n := range m.N {
		for k := range m.K {
			g := m.group(k)
			w[n*m.K+k] = half.F16ToF32(m.Scales[g*m.N+n]) * float32(int(m.Q[k*m.N+n])-int(m.Z[g*m.N+n]))
		}
	}
	return w
}

// Draw returns random modules for linears: codes below 2^bits, zero points
// in [0, 2^bits) with 0 and the top among them (2^(bits-1) where sym),
// scales of fp16 values that bf16 holds exactly too (8 significant bits),
// and with actOrder a g_idx as GPTQ's act order writes it (a random
// processing order cut in groups).
func Draw(seed uint64, linears []gptq.LinearShape, bits, groupSize int, sym, actOrder bool) []Module {
	r := rand.New(rand.NewPCG(seed, 77))
	var out []Module
	for _, l := range linears {
		m := Module{Name: l.Name, K: l.K, N: l.N, Bits: bits, GroupSize: groupSize, Sym: sym}
		G := m.G()
		m.Q = make([]uint8, l.K*l.N)
		for i := range m.Q {
			m.Q[i] = uint8(r.IntN(1 << bits))
		}
		m.Z = make([]uint8, G*l.N)
		for i := range m.Z {
			if sym {
				m.Z[i] = uint8(1 << (bits - 1))
			} else {
				m.Z[i] = uint8(r.IntN(1 << bits))
			}
		}
		if !sym {
			m.Z[0], m.Z[len(m.Z)-1] = 0, uint8(1<<bits-1)
		}
		m.Scales = make([]uint16, G*l.N)
		for i := range m.Scales {
			// [1/256, 1/128) in steps of 8 significant bits, as bf16 holds.
			m.Scales[i] = half.F32ToF16(float32(128+r.IntN(128)) / (1 << 15))
		}
		if actOrder {
			gs := groupSize
			if gs == -1 {
				gs = l.K
			}
			m.GIdx = make([]int32, l.K)
			for i, c := range r.Perm(l.K) {
				m.GIdx[c] = int32(i / gs)
			}
		}
		out = append(out, m)
	}
	return out
}

func i32Tensor(name string, shape []int, v []int32) safetensors.Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.I32, Shape: shape}, Data: b}
}

func f16Tensor(name string, shape []int, v []uint16) safetensors.Tensor {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F16, Shape: shape}, Data: b}
}

func bf16Tensor(name string, shape []int, v []uint16) safetensors.Tensor {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], half.F32ToBF16(half.F16ToF32(x)))
	}
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.BF16, Shape: shape}, Data: b}
}

// GPTQ returns m's GPTQ tensors (package gptq's packers) in format.
func GPTQ(m Module, format gptq.Format) []safetensors.Tensor {
	qw, err := gptq.PackQWeight(m.Q, m.K, m.N, m.Bits)
	if err != nil {
		panic(err)
	}
	qz, err := gptq.PackQZeros(m.Z, m.G(), m.N, m.Bits, format)
	if err != nil {
		panic(err)
	}
	gidx := make([]int32, m.K)
	for k := range gidx {
		gidx[k] = int32(m.group(k))
	}
	G := m.G()
	return []safetensors.Tensor{
		i32Tensor(m.Name+".qweight", []int{m.K * m.Bits / 32, m.N}, qw),
		i32Tensor(m.Name+".qzeros", []int{G, m.N * m.Bits / 32}, qz),
		f16Tensor(m.Name+".scales", []int{G, m.N}, m.Scales),
		i32Tensor(m.Name+".g_idx", []int{m.K}, gidx),
	}
}

// awqOrder is AutoAWQ's AWQ_ORDER: the column of a word's nibble j.
var awqOrder = [8]int{0, 2, 4, 6, 1, 3, 5, 7}

// awqPack packs v [rows, N] as WQLinear_GEMM.from_linear does: word
// column c of a row or-s v[row, 8c+AWQ_ORDER[j]] << 4j.
func awqPack(v []uint8, rows, N int) []int32 {
	out := make([]int32, rows*N/8)
	for r := range rows {
		for c := range N / 8 {
			var w uint32
			for j, col := range awqOrder {
				w |= uint32(v[r*N+8*c+col]) << (4 * j)
			}
			out[r*N/8+c] = int32(w)
		}
	}
	return out
}

// AWQ returns m's AWQ gemm tensors (4 bits, no act order).
func AWQ(m Module) []safetensors.Tensor {
	if m.Bits != 4 || m.GIdx != nil {
		panic("quantpack: AWQ packs 4 bits without act order")
	}
	G := m.G()
	return []safetensors.Tensor{
		i32Tensor(m.Name+".qweight", []int{m.K, m.N / 8}, awqPack(m.Q, m.K, m.N)),
		i32Tensor(m.Name+".qzeros", []int{G, m.N / 8}, awqPack(m.Z, G, m.N)),
		f16Tensor(m.Name+".scales", []int{G, m.N}, m.Scales),
	}
}

// Compressed returns m's compressed-tensors pack-quantized tensors as
// llm-compressor writes them: the signed codes q − 2^(bits−1) packed
// (pack_to_int32: + 2^(bits−1), LSB first) along K, scales [N, G] (bf16
// with bf16Scales, as a bf16 model's are), for an asymmetric module the
// signed zero points packed along N, weight_g_idx where m has act order,
// and weight_shape int64.
func Compressed(m Module, bf16Scales bool) []safetensors.Tensor {
	K, N, bits, G := m.K, m.N, m.Bits, m.G()
	pf := 32 / bits
	off := 1 << (bits - 1)
	// pack_to_int32 of a signed value s stores s + off: the unsigned code.
	field := func(signed int) uint32 { return uint32(signed+off) & (1<<bits - 1) }
	packed := make([]int32, N*K/pf)
	for n := range N {
		for k := range K {
			packed[n*K/pf+k/pf] |= int32(field(int(m.Q[k*N+n])-off) << (bits * (k % pf)))
		}
	}
	scale := make([]uint16, N*G)
	for n := range N {
		for g := range G {
			scale[n*G+g] = m.Scales[g*N+n]
		}
	}
	shape := make([]byte, 16)
	binary.LittleEndian.PutUint64(shape, uint64(N))
	binary.LittleEndian.PutUint64(shape[8:], uint64(K))
	out := []safetensors.Tensor{
		i32Tensor(m.Name+".weight_packed", []int{N, K / pf}, packed),
		{TensorInfo: safetensors.TensorInfo{Name: m.Name + ".weight_shape", DType: "I64", Shape: []int{2}}, Data: shape},
	}
	if bf16Scales {
		out = append(out, bf16Tensor(m.Name+".weight_scale", []int{N, G}, scale))
	} else {
		out = append(out, f16Tensor(m.Name+".weight_scale", []int{N, G}, scale))
	}
	if !m.Sym {
		zp := make([]int32, N/pf*G)
		for n := range N {
			for g := range G {
				zp[(n/pf)*G+g] |= int32(field(int(m.Z[g*N+n])-off) << (bits * (n % pf)))
			}
		}
		out = append(out, i32Tensor(m.Name+".weight_zero_point", []int{N / pf, G}, zp))
	}
	if m.GIdx != nil {
		out = append(out, i32Tensor(m.Name+".weight_g_idx", []int{K}, m.GIdx))
	}
	return out
}

// Write writes a checkpoint in dir (created): base's config.json with
// block as its quantization_config (nil: none), files (name → contents),
// base's other files but its weights (the tokenizer's), and base's
// weights in one model.safetensors with each module's .weight replaced by
// pack(module)'s tensors.
func Write(tb testing.TB, base, dir string, block map[string]any, files map[string]string, mods []Module, pack func(Module) []safetensors.Tensor) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(base, "config.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		tb.Fatal(err)
	}
	if block != nil {
		cfg["quantization_config"] = block
	}
	data, err = json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	files = mapsWith(files, "config.json", string(data))
	entries, err := os.ReadDir(base)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		n := e.Name()
		if _, ok := files[n]; ok || !e.Type().IsRegular() || strings.HasSuffix(n, ".safetensors") || strings.HasSuffix(n, ".index.json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(base, n))
		if err != nil {
			tb.Fatal(err)
		}
		files[n] = string(b)
	}
	for name, s := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	set, err := safetensors.OpenDir(base)
	if err != nil {
		tb.Fatal(err)
	}
	defer set.Close()
	replaced := map[string]bool{}
	for _, m := range mods {
		replaced[m.Name+".weight"] = true
	}
	var tensors []safetensors.Tensor
	for _, n := range set.FileOrder() {
		if replaced[n] {
			continue
		}
		t, err := set.Tensor(n)
		if err != nil {
			tb.Fatal(err)
		}
		tensors = append(tensors, t)
	}
	for _, m := range mods {
		tensors = append(tensors, pack(m)...)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), tensors, nil); err != nil {
		tb.Fatal(err)
	}
}

func mapsWith(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		if !strings.EqualFold(a, k) {
			out[a] = b
		}
	}
	return out
}
