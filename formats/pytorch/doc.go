// Package pytorch reads PyTorch checkpoints (pytorch_model.bin, as
// transformers saves them) without executing anything, for converting them
// to safetensors and inspecting them.
//
// # File layout
//
// torch.save (torch >= 1.6, _use_new_zipfile_serialization=True, the
// default) writes a zip archive whose entries sit under one directory,
// <archive>/ (the file's base name, or "archive" in newer torch):
//
//	<archive>/data.pkl     the state dict, pickled (protocol 2 by default)
//	<archive>/data/<key>   one entry per storage: its raw bytes, stored
//	                       uncompressed, elements in the writer's byte order
//	<archive>/byteorder    "little" or "big" (torch >= 2.1; absent: little)
//	<archive>/version, <archive>/.data/…   ignored
//
// A sharded checkpoint is pytorch_model-00001-of-0000K.bin … plus
// pytorch_model.bin.index.json:
//
//	{"metadata": {"total_size": bytes}, "weight_map": {name: shard file name}}
//
// # The pickle machine
//
// data.pkl is read by a small pickle machine that builds values and calls
// nothing. It accepts the opcodes torch.save emits for a state dict (PROTO,
// FRAME, MARK, STOP, the int, float, string, bytes, tuple, list and dict
// opcodes, the memo opcodes, GLOBAL, STACK_GLOBAL, REDUCE, BUILD, BINPERSID)
// and refuses any other (INST, OBJ, NEWOBJ, EXT…). GLOBAL and STACK_GLOBAL
// accept only
//
//	collections.OrderedDict                 the state dict and backward hooks
//	torch._utils._rebuild_tensor_v2         a tensor: (storage, offset, size, stride, …)
//	torch._utils._rebuild_tensor            the same, older torch
//	torch._utils._rebuild_parameter         an nn.Parameter: its data
//	torch._utils._rebuild_parameter_with_state
//	torch.<Name>Storage                     a storage type, in persistent ids
//
// Any other global (os.system, posix.system, builtins.eval,
// subprocess.Popen, torch._utils._rebuild_qtensor …) fails Open with an
// error wrapping ErrForbiddenGlobal that names the global as module.name
// and the file, before anything further is read. REDUCE is interpreted for
// the callables above only; BUILD drops the state of an OrderedDict (the
// state dict's _metadata) or a tensor. A persistent id ('storage',
// storage_type, key, location, numel) refers to the entry
// <archive>/data/<key>; location is ignored. The pickle must leave a dict
// of str to tensor; other values fail Open naming the key.
//
// Storage types map to safetensors dtypes: Float F32, Half F16, BFloat16
// BF16, Double F64, Long I64, Int I32, Short I16, Char I8, Byte U8, Bool
// BOOL, ComplexFloat C64, UInt16/32/64 U16/U32/U64, Float8_e4m3fn F8_E4M3,
// Float8_e5m2 F8_E5M2. Other storage types fail Open with an error naming
// the tensor and wrapping safetensors.ErrUnsupportedDType.
//
// # Validation and bounds
//
// Open reads the zip directory and data.pkl (at most MaxPickleBytes) and
// checks every tensor before returning: known dtype; its storage entry
// present, stored or deflated, inside the file (a deflated entry may claim
// at most 1032 uncompressed bytes per compressed byte); the storage's
// claimed element count backed by the entry's bytes; offset, shape and
// stride (all >= 0, at most 64 dims) free of overflow and reaching no
// element beyond the storage. A view whose elements overlap (stride 0, an
// expanded tensor) may materialize to more bytes than its storage entry
// only up to 16 MiB. So no size claimed by a header is allocated unless
// the file's own bytes back it. Errors name the file and, where there is
// one, the tensor.
//
// The legacy format (torch < 1.6 or _use_new_zipfile_serialization=False)
// fails with ErrLegacyFormat; a "big" byteorder fails with an error
// wrapping errors.ErrUnsupported.
//
// # Reading
//
// Open keeps only the state dict's structure; Tensor reads a tensor's bytes
// when asked and caches nothing, so a 14 GB checkpoint is converted one
// tensor at a time. A contiguous tensor is read in one ReadAt of exactly its
// bytes; a non-contiguous view (transposed, sliced with a stride) reads the
// span of its storage it covers and gathers it. Data is always a new
// buffer, contiguous, row-major and little-endian, owned by the caller and
// valid after Close. Tensors sharing a storage (tied weights such as
// lm_head.weight and model.embed_tokens.weight) each read it. CRCs of
// stored entries are not checked, as reads touch only parts of an entry.
//
// File and Set have Names, Infos and Tensor(name) (safetensors.Tensor, error),
// so either serves as model.Weights.
package pytorch
