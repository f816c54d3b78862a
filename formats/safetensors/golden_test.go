package safetensors

import (
	"math"
	"path/filepath"
	"testing"
)

// TestFixtureValues checks decoded values against figures computed from the
// fixture files with Python's struct module (formats 'e' and 'f'): the first
// four values, the last one and the float64 sum of the tensor.
func TestFixtureValues(t *testing.T) {
	tests := []struct {
		model, tensor string
		first         []float64
		last, sum     float64
		n             int
	}{
		{"openchat-tiny", "model.embed_tokens.weight", []float64{-0.00496673583984375, -0.03167724609375, 0.01119232177734375, -0.0697021484375}, -0.1903076171875, 8962.085905730724, 8192512},
		{"openchat-tiny", "model.norm.weight", []float64{2.115234375, 2.1328125, 2.2109375, 2.119140625}, 2.09765625, 542.9189453125, 256},
		{"stories260K-hf-mistral", "lm_head.weight", []float64{-0.29474878311157227, 0.5618956089019775, 0.1754225343465805, 0.34057360887527466}, -0.424032598733902, -752.3677446640068, 32768},
		{"stories260K-hf-mistral", "model.norm.weight", []float64{2.4583089351654053, 1.3673226833343506, 1.7504382133483887, 1.1078318357467651}, 1.7077769041061401, 115.95276230573654, 64},
	}
	for _, tt := range tests {
		t.Run(tt.model+"/"+tt.tensor, func(t *testing.T) {
			f, err := Open(filepath.Join(fixtureDir(t, tt.model), "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			x, ok := f.Tensor(tt.tensor)
			if !ok {
				t.Fatalf("missing %q", tt.tensor)
			}
			v, err := x.Float32()
			if err != nil {
				t.Fatal(err)
			}
			if len(v) != tt.n {
				t.Fatalf("%d values, want %d", len(v), tt.n)
			}
			for i, w := range tt.first {
				if float64(v[i]) != w {
					t.Errorf("value %d = %v, want %v", i, v[i], w)
				}
			}
			if float64(v[len(v)-1]) != tt.last {
				t.Errorf("last value = %v, want %v", v[len(v)-1], tt.last)
			}
			var sum float64
			for _, x := range v {
				sum += float64(x)
			}
			if math.Abs(sum-tt.sum) > 1e-9*math.Abs(tt.sum) {
				t.Errorf("sum = %v, want %v", sum, tt.sum)
			}
		})
	}
}
