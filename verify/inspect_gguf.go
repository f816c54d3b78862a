package verify

import (
	"fmt"
	"strings"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// GGUFReport describes a GGUF file: its model metadata under llama.cpp's
// keys, its tokenizer and its tensors.
type GGUFReport struct {
	Path           string         `json:"path"`
	Architecture   string         `json:"architecture"`
	Name           string         `json:"name,omitempty"`
	Hyperparams    map[string]any `json:"hyperparameters"` // <arch>.* keys without the prefix
	TokenizerModel string         `json:"tokenizer_model,omitempty"`
	VocabSize      int            `json:"vocab_size"`
	ChatTemplate   bool           `json:"chat_template"`
	FileType       uint32         `json:"file_type"`
	NumTensors     int            `json:"num_tensors"`
	NumParameters  int64          `json:"num_parameters"`
	Types          map[string]int `json:"tensor_types"` // tensors per type
	Metadata       int            `json:"metadata_keys"`
	SizeBytes      int64          `json:"size_bytes"`
}

// InspectGGUF reads a GGUF file's header (metadata and tensor infos; no
// tensor data).
func InspectGGUF(path string) (*GGUFReport, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &GGUFReport{Path: path, Hyperparams: map[string]any{}, Types: map[string]int{}, SizeBytes: f.Size()}
	kvs := f.KVs()
	r.Metadata = len(kvs)
	r.Architecture, _ = gguf.Value[string](f, "general.architecture")
	r.Name, _ = gguf.Value[string](f, "general.name")
	r.FileType, _ = gguf.Value[uint32](f, "general.file_type")
	r.TokenizerModel, _ = gguf.Value[string](f, "tokenizer.ggml.model")
	if toks, err := gguf.Value[[]string](f, "tokenizer.ggml.tokens"); err == nil {
		r.VocabSize = len(toks)
	}
	_, r.ChatTemplate = f.Get("tokenizer.chat_template")
	if r.Architecture != "" {
		for _, kv := range kvs {
			if k, ok := strings.CutPrefix(kv.Key, r.Architecture+"."); ok {
				r.Hyperparams[k] = kv.Value
			}
		}
	}
	for _, t := range f.Tensors() {
		r.NumTensors++
		r.Types[t.Type.String()]++
		r.NumParameters += t.NumElements()
	}
	if r.Architecture == "" {
		if t, _ := gguf.Value[string](f, "general.type"); t == "imatrix" {
			return r, fmt.Errorf("%s: an importance matrix (general.type imatrix, %d tensors), not a model: convert --gguf TYPE --imatrix %s reads it", path, r.NumTensors, path)
		}
		return r, fmt.Errorf("%s: no general.architecture", path)
	}
	return r, nil
}
