package model

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
)

// TestObserve: Observe's taps see the intermediates ForwardLast's hook sees
// for the same fresh sequence (model.embed and every layer's, the same
// names in the same order, the same values bit for bit), and nothing of the
// head; a tap's error ends the pass and comes back wrapped.
func TestObserve(t *testing.T) {
	m := loadModel(t, fixture(t, "models/stories260K-hf-mistral"))
	ids := []int{1, 403, 407, 261, 378}
	type obs struct {
		name       string
		rows, cols int
		x          []float32
	}
	var want, got []obs
	if _, err := m.ForwardLast(ids, nil, func(name string, x []float32, rows, cols int) {
		want = append(want, obs{name, rows, cols, slices.Clone(x)})
	}); err != nil {
		t.Fatal(err)
	}
	want = slices.DeleteFunc(want, func(o obs) bool { return o.name == "model.norm" || o.name == "logits" })
	b := m.Backend()
	if err := m.Observe(ids, func(name string, x runtime.Tensor) error {
		h := make([]float32, x.Len())
		if err := b.Download(h, x); err != nil {
			return err
		}
		got = append(got, obs{name, runtime.Rows(x), runtime.Cols(x), h})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if wantN := 1 + len(Intermediates)*m.Config.NumHiddenLayers; len(want) != wantN {
		t.Fatalf("ForwardLast hooked %d intermediates, want %d", len(want), wantN)
	}
	if len(got) != len(want) {
		t.Fatalf("Observe tapped %d intermediates, ForwardLast hooked %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.name != w.name || g.rows != w.rows || g.cols != w.cols {
			t.Fatalf("tap %d: %s [%d %d], the hook's %s [%d %d]", i, g.name, g.rows, g.cols, w.name, w.rows, w.cols)
		}
		for j := range w.x {
			if math.Float32bits(g.x[j]) != math.Float32bits(w.x[j]) {
				t.Fatalf("%s[%d]: %g, the hook's %g", w.name, j, g.x[j], w.x[j])
			}
		}
	}

	stop := errors.New("enough")
	n := 0
	err := m.Observe(ids, func(name string, _ runtime.Tensor) error {
		n++
		if name == "model.layers.0.attn_q" {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("a tap's error: %v after %d taps, want %v after 3", err, n, stop)
	}
	if err := m.Observe(nil, func(string, runtime.Tensor) error { return nil }); err == nil {
		t.Error("Observe of no tokens: no error")
	}
}
