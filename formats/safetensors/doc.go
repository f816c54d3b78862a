// Package safetensors reads and writes checkpoints in the safetensors format
// (https://huggingface.co/docs/safetensors), as transformers, AutoGPTQ,
// GPTQModel, ExLlama, vLLM and TGI load them.
//
// # File layout
//
//	bytes [0, 8)        N, the JSON header length, uint64 little-endian
//	bytes [8, 8+N)      JSON object, padded with spaces (writers pad so 8+N
//	                    is a multiple of 8):
//	                      "__metadata__": {string: string}   (optional)
//	                      name: {"dtype": "F16", "shape": [out, in],
//	                             "data_offsets": [begin, end]}
//	bytes [8+N, EOF)    tensor data; offsets are relative to byte 8+N;
//	                    each tensor row-major, elements little-endian
//
// A sharded checkpoint is model-00001-of-0000K.safetensors … plus
// model.safetensors.index.json:
//
//	{"metadata": {"total_size": bytes}, "weight_map": {name: shard file name}}
//
// # Reading
//
// Open maps a file read-only and validates its whole header before
// returning: header length at most MaxHeaderSize and inside the file, a JSON
// object with no duplicate keys, __metadata__ a string map, every shape
// non-negative without overflow, every dtype one the format defines, offsets
// 0 <= begin <= end <= data size, end-begin equal to the shape's element
// count times the dtype size, and the tensors packed from the data
// section's first byte to its last: no byte shared, no gap, nothing after
// the last (the safetensors library's own check, so a file it refuses, and
// transformers, vLLM and TGI with it, is refused here too; an empty tensor
// sits where one tensor ends and the next begins). Errors name the file and
// the tensor. After Open succeeds, Tensor never fails for a listed name.
//
// Tensor.Data is a zero-copy view into the mapping, capped at its own length
// so appending cannot reach the next tensor. It must not be written (the
// mapping is read-only; a write faults) and must not be used after Close.
// Float32 and Int32 copy out, converting F16 and BF16 exactly.
//
// F32, F16, BF16, I32, I8 and U8 are supported. The other dtypes of the
// format (F64, I64, I16, U16, U32, U64, BOOL, C64, F8_E4M3, F8_E5M2, F8_E8M0,
// F4, F6_E2M3, F6_E3M2) are recognised: files holding them open, their bytes
// can be viewed and copied, and converting them fails with an error wrapping
// ErrUnsupportedDType. A dtype the format does not define fails Open with
// that error.
//
// OpenDir opens a checkpoint directory as a Set: model.safetensors, else the
// shards listed in model.safetensors.index.json (each listed tensor must be
// in its shard), else all *.safetensors files, whose names must not clash.
//
// # Writing
//
// Create takes the full list of tensors up front so every header can be
// computed before any data, then Write streams the data one tensor at a time
// in declaration order; memory use is one tensor, held by the caller, plus a
// 1 MiB buffer. Tensors are laid out contiguously in declaration order after
// a header holding "__metadata__" first ("format":"pt" always set).
// With MaxShardBytes > 0 the tensors are split greedily in order so no shard
// holds more than MaxShardBytes of data unless a single tensor is larger
// (headers are not counted, as in transformers). One shard is written as
// model.safetensors without an index; several as
// model-00001-of-0000K.safetensors with model.safetensors.index.json.
//
// Files are written under hidden temporary names in the target directory,
// fsynced, and renamed to their final names only by a successful Close; the
// index is renamed last, so its presence means every shard is complete. A
// failed or incomplete write leaves no file behind. Files already present
// under other names (say an old model.safetensors beside new shards) are not
// removed, and OpenDir prefers model.safetensors.
package safetensors
