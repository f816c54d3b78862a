package model

import (
	"encoding/binary"
	"errors"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// overlay is Weights with some tensors replaced or added.
type overlay struct {
	base Weights
	over map[string]safetensors.Tensor
	drop map[string]bool
}

func (o overlay) Tensor(name string) (safetensors.Tensor, error) {
	if t, ok := o.over[name]; ok {
		return t, nil
	}
	if o.drop[name] {
		return missing{o.base, name}.Tensor(name)
	}
	return o.base.Tensor(name)
}

func tensorBytes(name string, dt safetensors.DType, shape []int, data []byte) safetensors.Tensor {
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: dt, Shape: shape}, Data: data, File: "test"}
}

func i32Bytes(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// randomModule draws a module's GPTQ values from r, in this order: codes
// [K, N] below 2^bits, zero points [G, N] in [zlo, zlo+zn), fp16 scales
// [G, N] in [slo, slo+sspan) (also as little-endian bytes).
func randomModule(r *rand.Rand, K, N, G, bits, zlo, zn int, slo, sspan float64) (q, z []uint8, sc []uint16, scBytes []byte) {
	q = make([]uint8, K*N)
	for j := range q {
		q[j] = uint8(r.IntN(1 << bits))
	}
	z = make([]uint8, G*N)
	for j := range z {
		z[j] = uint8(zlo + r.IntN(zn))
	}
	sc = make([]uint16, G*N)
	scBytes = make([]byte, 2*G*N)
	for j := range sc {
		sc[j] = half.F32ToF16(float32(slo + sspan*r.Float64()))
		binary.LittleEndian.PutUint16(scBytes[2*j:], sc[j])
	}
	return q, z, sc, scBytes
}

// putGPTQ puts module name's GPTQ tensors (v1) in o in place of its
// weight: codes q [K, N] and zero points z [G, N] packed at bits, the fp16
// scales' bytes [G, N] and g_idx [K].
func putGPTQ(t *testing.T, o overlay, name string, q, z []uint8, scBytes []byte, gidx []int32, K, N, bits int) {
	t.Helper()
	G := len(z) / N
	packedQ, err := gptq.PackQWeight(q, K, N, bits)
	if err != nil {
		t.Fatal(err)
	}
	packedZ, err := gptq.PackQZeros(z, G, N, bits, gptq.FormatV1)
	if err != nil {
		t.Fatal(err)
	}
	o.drop[name+".weight"] = true
	o.over[name+".qweight"] = tensorBytes(name+".qweight", safetensors.I32, []int{K * bits / 32, N}, i32Bytes(packedQ))
	o.over[name+".qzeros"] = tensorBytes(name+".qzeros", safetensors.I32, []int{G, N * bits / 32}, i32Bytes(packedZ))
	o.over[name+".scales"] = tensorBytes(name+".scales", safetensors.F16, []int{G, N}, scBytes)
	o.over[name+".g_idx"] = tensorBytes(name+".g_idx", safetensors.I32, []int{K}, i32Bytes(gidx))
}

// TestGPTQLoad builds a GPTQ checkpoint of stories260K from random codes
// (4 bits, group size 32, scrambled g_idx as desc_act writes it,
// the MLP left unquantized because 172 does not pack at 4 bits), and checks that
// the model loaded from it gives exactly the logits of a floating-point
// checkpoint holding W[n,k] = scale[g_idx[k],n]·(q[k,n]-zero[g_idx[k],n])
// computed here by hand.
func TestGPTQLoad(t *testing.T) {
	dir := fixture(t, "models/stories260K-hf-mistral")
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	d, err := dimsOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const bits, gs = 4, 32
	qcfg := gptq.DefaultQuantizeConfig()
	qcfg.Bits, qcfg.GroupSize = bits, gs
	r := rand.New(rand.NewPCG(9, 9))
	qw := overlay{base: set, over: map[string]safetensors.Tensor{}, drop: map[string]bool{}}
	fw := overlay{base: set, over: map[string]safetensors.Tensor{}}
	for i := range cfg.NumHiddenLayers {
		for _, mod := range LinearModules[:4] {
			name := LayerPrefix(i) + "." + mod
			N, K, _ := d.linearShape(mod)
			G := (K + gs - 1) / gs
			q, z, sc, scBytes := randomModule(r, K, N, G, bits, 1, 15, 0.005, 0.02)
			gidx := make([]int32, K)
			for k := range gidx {
				gidx[k] = int32((k * 7) % G)
			}
			putGPTQ(t, qw, name, q, z, scBytes, gidx, K, N, bits)
			w := make([]float32, N*K)
			for n := range N {
				for k := range K {
					g := int(gidx[k])
					w[n*K+k] = half.F16ToF32(sc[g*N+n]) * float32(int(q[k*N+n])-int(z[g*N+n]))
				}
			}
			fw.over[name+".weight"] = tensorBytes(name+".weight", safetensors.F32, []int{N, K}, f32Bytes(w))
		}
	}
	b := cpu.New(0)
	mq, err := FromWeights(qw, cfg, &qcfg, b)
	if err != nil {
		t.Fatal(err)
	}
	defer mq.Close()
	mf, err := FromWeights(fw, cfg, nil, b)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	ids := []int{1, 403, 407, 261, 378, 432}
	got, err := mq.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := mf.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("GPTQ checkpoint logits differ from the dequantized fp32 checkpoint's")
	}
	// A GPTQ tensor of the wrong shape is an error naming it.
	bad := overlay{base: qw, over: map[string]safetensors.Tensor{}}
	name := "model.layers.0.self_attn.q_proj.g_idx"
	bad.over[name] = tensorBytes(name, safetensors.I32, []int{3}, i32Bytes([]int32{0, 0, 0}))
	if _, err := FromWeights(bad, cfg, &qcfg, b); err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("err = %v, want one naming %s", err, name)
	}
	// A bias (AutoGPTQ's QuantLinear writes one, fp16 [N]) of zeros is a
	// no-op; any other is refused, naming it, where it was ignored.
	name = "model.layers.1.self_attn.k_proj.bias"
	bias := make([]byte, 2*d.kvHeads*d.headDim)
	biased := overlay{base: qw, over: map[string]safetensors.Tensor{name: tensorBytes(name, safetensors.F16, []int{len(bias) / 2}, bias)}}
	mb, err := FromWeights(biased, cfg, &qcfg, b)
	if err != nil {
		t.Fatalf("zero bias: %v", err)
	}
	defer mb.Close()
	if got, err := mb.Forward(ids, nil, nil); err != nil || !slices.Equal(got, want) {
		t.Errorf("zero bias: logits differ (err %v)", err)
	}
	binary.LittleEndian.PutUint16(bias[2*5:], 0x3c00) // 1.0
	if _, err := FromWeights(biased, cfg, &qcfg, b); !errors.Is(err, ErrLinearBias) || !strings.Contains(err.Error(), `tensor "`+name+`": largest |value| 1 (element 5)`) {
		t.Errorf("bias 1.0: err = %v, want ErrLinearBias naming %s", err, name)
	}
}
