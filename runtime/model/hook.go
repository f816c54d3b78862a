package model

import (
	"fmt"
	"strconv"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
)

// Hook observes a named intermediate: x is a host copy [rows, cols],
// valid only during the call.
type Hook func(name string, x []float32, rows, cols int)

// Tap observes a named intermediate where it lives: t is the backend tensor
// [rows, cols] itself, valid only during the call, so that calibration
// activations need not leave the device (the GPTQ driver folds them into
// Hessians with Backend.Gram). An error ends the pass.
type Tap func(name string, t runtime.Tensor) error

// Intermediates are the per-layer hook names (after "model.layers.<i>.")
// in the order a layer produces them.
var Intermediates = []string{
	"attn_norm", "attn_q", "attn_k", "attn_v", "attn_out", "ffn_norm", "ffn_act", "out",
}

// LayerPrefix returns "model.layers.<i>".
func LayerPrefix(i int) string { return "model.layers." + strconv.Itoa(i) }

// emit downloads t and calls hook; it does nothing for a nil hook.
func emit(b runtime.Backend, hook Hook, name string, t runtime.Tensor) error {
	if hook == nil {
		return nil
	}
	x := make([]float32, t.Len())
	if err := b.Download(x, t); err != nil {
		return fmt.Errorf("model: hook %s: %w", name, err)
	}
	hook(name, x, runtime.Rows(t), runtime.Cols(t))
	return nil
}

// LinearShape returns the in (K) and out (N) features of a Linear module
// ("self_attn.q_proj" … "mlp.down_proj") of a layer of cfg; ok is false for a
// module that is not one of LinearModules or sizes the model cannot run.
func LinearShape(cfg *hfconfig.Config, module string) (K, N int, ok bool) {
	d, err := dimsOf(cfg)
	if err != nil {
		return 0, 0, false
	}
	n, k, ok := d.linearShape(module)
	return k, n, ok
}
