package model

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/runtime"
)

// mapWeights is Weights held in memory.
type mapWeights map[string]safetensors.Tensor

func (w mapWeights) Tensor(name string) (safetensors.Tensor, error) {
	t, ok := w[name]
	if !ok {
		return missing{nil, name}.Tensor(name)
	}
	return t, nil
}

// hostTensor is what hostLoader hands out.
type hostTensor struct{ shape []int }

func (t hostTensor) DType() runtime.DType { return runtime.F16 }
func (t hostTensor) Shape() []int         { return t.shape }
func (t hostTensor) Len() int             { return t.shape[0] * t.shape[len(t.shape)-1] }

// hostLoader is a backend that keeps GPTQ weights quantized and fuses them
// but uploads nothing: it measures the model's host work of a load. The
// other Backend methods panic (the nil embedded interface).
type hostLoader struct{ runtime.Backend }

func (hostLoader) Alloc(dt runtime.DType, shape ...int) (runtime.Tensor, error) {
	return hostTensor{shape}, nil
}
func (hostLoader) UploadRaw(runtime.Tensor, []byte, runtime.DType) error { return nil }
func (hostLoader) Free(runtime.Tensor)                                   {}
func (hostLoader) LoadQuant(q *runtime.QuantWeight) (runtime.Tensor, error) {
	return hostTensor{[]int{q.N, q.K}}, nil
}
func (hostLoader) LoadQuantSplit(ws []*runtime.QuantWeight) (runtime.Tensor, error) {
	return hostTensor{[]int{ws[0].N, ws[0].K}}, nil
}
func (hostLoader) LoadQuantGLU(gate, up *runtime.QuantWeight) (runtime.Tensor, error) {
	return hostTensor{[]int{2 * gate.N, gate.K}}, nil
}
func (hostLoader) MatMulSplit([]runtime.Tensor, runtime.Tensor, runtime.Tensor) {}
func (hostLoader) MatMulGLU(runtime.Tensor, runtime.Tensor, runtime.Tensor)     {}

// bench7B is the Mistral-7B shape of one decoder layer.
var bench7B = dims{hidden: 4096, inter: 14336, heads: 32, kvHeads: 8, headDim: 128, vocab: 32000}

// benchLayerWeights returns layer 0 of a 4-bit, group-128, act-order GPTQ
// checkpoint of shape d with random valid tensors.
func benchLayerWeights(d dims, quant *gptq.QuantizeConfig) mapWeights {
	r := rand.New(rand.NewPCG(1, 2))
	w := mapWeights{}
	p := LayerPrefix(0) + "."
	norm := make([]byte, 2*d.hidden)
	for i := range d.hidden {
		binary.LittleEndian.PutUint16(norm[2*i:], half.F32ToF16(1))
	}
	for _, name := range []string{"input_layernorm.weight", "post_attention_layernorm.weight"} {
		w[p+name] = tensorBytes(p+name, safetensors.F16, []int{d.hidden}, norm)
	}
	randWords := func(n int) []byte {
		b := make([]byte, 4*n)
		for i := 0; i < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], r.Uint64())
		}
		return b
	}
	for _, m := range LinearModules {
		n, k, _ := d.linearShape(m)
		qw, qz, sc, _, err := gptq.ShapesFor(k, n, quant.Bits, quant.GroupSize)
		if err != nil {
			panic(err)
		}
		G := sc[0]
		name := p + m
		w[name+".qweight"] = tensorBytes(name+".qweight", safetensors.I32, qw[:], randWords(qw[0]*qw[1]))
		w[name+".qzeros"] = tensorBytes(name+".qzeros", safetensors.I32, qz[:], randWords(qz[0]*qz[1]))
		scales := make([]byte, 2*G*n)
		for i := range G * n {
			binary.LittleEndian.PutUint16(scales[2*i:], half.F32ToF16(float32(0.002+0.02*r.Float64())))
		}
		w[name+".scales"] = tensorBytes(name+".scales", safetensors.F16, sc[:], scales)
		w[name+".g_idx"] = tensorBytes(name+".g_idx", safetensors.I32, []int{k}, i32Bytes(gptq.GIdx(k, quant.GroupSize, r.Perm(k), false)))
	}
	return w
}

// BenchmarkLoadLayer measures the model's host work of loading one
// Mistral-7B decoder layer (4 bits, group 128, act order) for a backend
// that fuses quantized weights, by stage: reading and validating the GPTQ
// tensors (readLinear), making act order sequential (Sequential), folding
// down_proj's order into gate/up (PermuteOutputs after Sequential, or
// sequential_cols: gate and up unpacked in that order), and all of bindLayer
// (what the backend's loaders then do is BenchmarkLoadQuantHost in
// runtime/cuda).
//
//	go test ./runtime/model -run '^$' -bench LoadLayer -benchtime 5x
func BenchmarkLoadLayer(b *testing.B) {
	quant := &gptq.QuantizeConfig{Bits: 4, GroupSize: 128, DescAct: true, CheckpointFormat: "gptq"}
	d := bench7B
	w := benchLayerWeights(d, quant)
	p := LayerPrefix(0) + "."
	b.Run("readLinear", func(b *testing.B) {
		for b.Loop() {
			for _, m := range LinearModules {
				n, k, _ := d.linearShape(m)
				if _, err := readLinear(w, p+m, n, k, quant); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	ls := map[string]*gptq.Linear{}
	for _, m := range LinearModules {
		n, k, _ := d.linearShape(m)
		l, err := readLinear(w, p+m, n, k, quant)
		if err != nil {
			b.Fatal(err)
		}
		ls[m] = l
	}
	b.Run("Sequential", func(b *testing.B) {
		for b.Loop() {
			for _, m := range LinearModules {
				if _, err := Sequential(ls[m]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	down, err := Sequential(ls["mlp.down_proj"])
	if err != nil {
		b.Fatal(err)
	}
	var gateUp []*runtime.QuantWeight
	for _, m := range []string{"mlp.gate_proj", "mlp.up_proj"} {
		q, err := Sequential(ls[m])
		if err != nil {
			b.Fatal(err)
		}
		gateUp = append(gateUp, q)
	}
	b.Run("PermuteOutputs", func(b *testing.B) {
		for b.Loop() {
			for _, q := range gateUp {
				if _, err := q.PermuteOutputs(down.Perm); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("sequential_cols", func(b *testing.B) {
		for b.Loop() {
			for _, m := range []string{"mlp.gate_proj", "mlp.up_proj"} {
				if _, err := sequential(ls[m], down.Perm); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("bindLayer", func(b *testing.B) {
		for b.Loop() {
			bd := binder{w: w, b: hostLoader{}, quant: quant, dt: runtime.F16}
			if _, err := bindLayer(&bd, d, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
