package weights

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/pytorch"
	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// The formats OpenDir reports, as inspect and convert print them.
const (
	Safetensors = "safetensors"
	PyTorch     = "pytorch"
)

// Set is a checkpoint's weights: a *safetensors.Set or a *pytorch.Set.
type Set interface {
	Names() []string
	Infos() []safetensors.TensorInfo
	Tensor(name string) (safetensors.Tensor, error)
	Files() []string
	Close() error
}

// OpenDir opens the weights in dir and says which format holds them
// (Safetensors or PyTorch): its safetensors files where it has any
// (safetensors.OpenDir), else its PyTorch files (pytorch.OpenDir).
func OpenDir(dir string) (Set, string, error) {
	if files, _ := filepath.Glob(filepath.Join(dir, "*.safetensors")); len(files) > 0 {
		set, err := safetensors.OpenDir(dir)
		if err != nil {
			return nil, "", err
		}
		return set, Safetensors, nil
	}
	set, err := pytorch.OpenDir(dir)
	switch {
	case errors.Is(err, pytorch.ErrNoWeights):
		// No weights of any format, not which PyTorch files are missing.
		return nil, "", fmt.Errorf("%s: no weights (*.safetensors, pytorch_model.bin or a *.bin.index.json): %w", dir, pytorch.ErrNoWeights)
	case err != nil:
		return nil, "", err
	}
	return set, PyTorch, nil
}

// ForText names set's tensors as cfg's text model's where cfg is a
// multimodal checkpoint's (hfconfig.Config.TextNames: language_model.model.…
// or model.language_model.… read as model.…; the vision tower's and the
// projector's keep their names; safetensors.Set.DiskName maps back). Other
// sets are left as they are. A multimodal model's PyTorch weights are
// refused.
func ForText(set Set, cfg *hfconfig.Config) error {
	toText, toStored, err := cfg.TextNames(set.Names())
	if err != nil || toText == nil {
		return err
	}
	st, ok := set.(*safetensors.Set)
	if !ok {
		return fmt.Errorf("%s: PyTorch weights of a multimodal %s checkpoint: %w (its safetensors are read)", cfg.File, cfg.Wrapper, hfconfig.ErrUnsupported)
	}
	return st.Rename(toText, toStored)
}

// OpenText opens dir's safetensors checkpoint (safetensors.OpenDir) with
// its tensors named as cfg's text model's (ForText).
func OpenText(dir string, cfg *hfconfig.Config) (*safetensors.Set, error) {
	st, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	if err := ForText(st, cfg); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}
