// Package weights opens the weight files of a Hugging Face checkpoint
// directory whatever their format, for the commands that read either:
// safetensors (package safetensors) where the directory holds any
// *.safetensors file, else PyTorch .bin files (package pytorch:
// pytorch_model.bin or the shards of a *.bin.index.json, read without
// executing anything). A directory with a *.safetensors file is never read
// as PyTorch: a damaged safetensors file is an error, not a fallback.
//
// Both sets list their tensors (Names, Infos, sorted by name), give them as
// safetensors.Tensor by Hugging Face name and name their files; see the two
// packages for how each validates, maps or reads. A directory holding
// neither fails OpenDir with an error that says so and wraps
// pytorch.ErrNoWeights (and so fs.ErrNotExist).
//
// ForText and OpenText name a multimodal checkpoint's tensors as its text
// model's (model.layers.N…, where the checkpoint stores
// language_model.model.layers.N… or model.language_model.layers.N…; see
// hfconfig.Config.TextNames), so that every reader of the text model
// (load, quantize, convert, inspect, verify) uses one set of names; the
// vision tower's and projector's tensors keep theirs, and a writer stores
// the text model back under the input's prefix (safetensors.Set.DiskName,
// WriterOptions.Rename).
package weights
