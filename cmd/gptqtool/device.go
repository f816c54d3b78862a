package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/quantized"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/quantize/gpu"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/cuda"
	"github.com/gptqtool/gptqtool/runtime/model"
)

const deviceHelp = "cpu, cuda, or auto (cuda where a CUDA driver and device load, else cpu)"

// newBackend returns the execution backend a --device flag names, and says
// on log which one it is when the choice was automatic. A positive threads
// also bounds the Go scheduler, so the work outside the backend (GPTQ,
// tokenizing, scoring) keeps to the same cores.
func newBackend(device string, threads int, log io.Writer) (runtime.Backend, error) {
	return newBackendLimit(device, threads, 0, log)
}

// newBackendLimit is newBackend with a cap on the device memory the CUDA
// backend may take (0: none), to run as on a smaller card.
func newBackendLimit(device string, threads int, gpuLimit int64, log io.Writer) (runtime.Backend, error) {
	if err := checkDeviceFlags(device, threads); err != nil {
		return nil, err
	}
	if threads > 0 {
		goruntime.GOMAXPROCS(threads)
	}
	switch device {
	case "cpu":
		return cpu.New(threads), nil
	case "cuda", "auto":
		b, err := cuda.New(cuda.Options{MemoryLimit: gpuLimit, Log: log})
		switch {
		case err == nil:
			if device == "auto" {
				fmt.Fprintf(log, "device: cuda (%s)\n", b.Device())
			}
			return b, nil
		case device == "auto" && errors.Is(err, cuda.ErrNotAvailable):
			c := cpu.New(threads)
			fmt.Fprintf(log, "device: cpu, %d threads (%v)\n", c.Threads(), err)
			return c, nil
		}
		return nil, fmt.Errorf("--device %s: %w", device, err)
	}
	return nil, usageError{fmt.Errorf("--device %q: want cpu, cuda or auto", device)}
}

// checkDeviceFlags is newBackendLimit's check of --device and --threads,
// for a command that checks every flag before it reads any file.
func checkDeviceFlags(device string, threads int) error {
	if threads < 0 {
		return usageError{fmt.Errorf("--threads %d: want 0 (all cores) or more", threads)}
	}
	switch device {
	case "cpu", "cuda", "auto":
		return nil
	}
	return usageError{fmt.Errorf("--device %q: want cpu, cuda or auto", device)}
}

// closeBackend releases a backend newBackend returned: the CUDA one's
// context, memory and pinned launch arguments (the CPU one holds none).
func closeBackend(b runtime.Backend) {
	if c, ok := b.(interface{ Close() }); ok {
		c.Close()
	}
}

// solverFor is the GPTQ solver that goes with a backend: the device solver
// (and so the device driver) on CUDA, nil (the reference driver) on the CPU.
// profile makes the device solver time its phases.
func solverFor(b runtime.Backend, profile bool) quantize.Solver {
	if cb, ok := b.(*cuda.Backend); ok {
		s := gpu.New(cb)
		s.Profile = profile
		return s
	}
	return nil
}

const dtypeHelp = "activation and KV cache dtype: auto (f16 for GPTQ checkpoints and the checkpoint's own dtype otherwise on cuda, f32 on the cpu), f32, f16 or bf16"

// dtypeFlag is a --dtype value in the names the commands switch on (f32,
// f16, bf16, auto): any case, and the other names users bring from
// PyTorch, transformers and llama.cpp (safetensors.ParseFloatDType). Other
// values come back lower-cased, for the command's own refusal.
func dtypeFlag(v string) string {
	if d, ok := safetensors.ParseFloatDType(v); ok {
		return strings.ToLower(string(d)) // F32, F16, BF16 as the flag spells them
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// loadModel loads a checkpoint on b in the dtype a --dtype flag names;
// "auto" keeps GPTQ weights quantized in fp16 and fp checkpoints in their
// own dtype where the backend has 16-bit tensors, fp32 elsewhere. ctx is
// the longest sequence the command runs, in positions (model.Options'
// Context: 0 for max_position_embeddings), which chooses Phi-3's longrope
// factors.
func loadModel(dir string, b runtime.Backend, dtype string, ctx int) (*model.Model, error) {
	if gguf.IsFile(dir) {
		return loadGGUF(dir, b, dtype, ctx)
	}
	dt, err := modelDType(dtype, b, func() (*hfconfig.Config, bool, error) {
		cfg, err := hfconfig.Load(dir)
		if err != nil {
			return nil, false, err
		}
		_, qerr := quantized.ReadConfig(dir) // (GPTQ, AWQ or compressed-tensors)
		return cfg, qerr == nil, nil
	})
	if err != nil {
		return nil, err
	}
	return model.LoadWith(dir, b, model.Options{DType: dt, Context: ctx})
}

// loadCheckpoint is loadModel of a checkpoint already opened (and checked)
// with model.Open: its configs and headers are not read again.
func loadCheckpoint(c *model.Checkpoint, b runtime.Backend, dtype string, ctx int) (*model.Model, error) {
	dt, err := modelDType(dtype, b, func() (*hfconfig.Config, bool, error) { return c.Config, c.Quant != nil, nil })
	if err != nil {
		return nil, err
	}
	return c.Load(b, model.Options{DType: dt, Context: ctx})
}

// modelDType is the dtype a --dtype flag names on b; for "auto", conf
// gives the checkpoint's config and whether it is GPTQ.
func modelDType(dtype string, b runtime.Backend, conf func() (*hfconfig.Config, bool, error)) (runtime.DType, error) {
	var dt runtime.DType
	switch dtype = dtypeFlag(dtype); dtype {
	case "f32":
		dt = runtime.F32
	case "f16":
		dt = runtime.F16
	case "bf16":
		dt = runtime.BF16
	case "auto":
		dt = runtime.F32
		if runtime.Supports(b, runtime.F16) {
			cfg, quantized, err := conf()
			if err != nil {
				return dt, err
			}
			switch {
			case quantized:
				dt = runtime.F16
			case cfg.DType == "float16":
				dt = runtime.F16
			case cfg.DType == "bfloat16":
				dt = runtime.BF16
			}
		}
	default:
		return dt, usageError{fmt.Errorf("--dtype %q: want auto, f32, f16 or bf16", dtype)}
	}
	if !runtime.Supports(b, dt) {
		return dt, usageError{fmt.Errorf("--dtype %s: backend %s has %v tensors only", dtype, b.Name(), b.DTypes())}
	}
	return dt, nil
}

// loadGGUF loads a llama-, qwen2- or qwen3-architecture GGUF file (gguf.File.HFConfig) on b,
// its weights dequantized (gguf.ModelWeights) into the dtype a --dtype
// flag names ("auto": fp16 on cuda, fp32 on the cpu).
func loadGGUF(path string, b runtime.Backend, dtype string, ctx int) (*model.Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, err := f.HFConfig()
	if err != nil {
		return nil, err
	}
	dt, err := modelDType(dtype, b, func() (*hfconfig.Config, bool, error) { return cfg, false, nil })
	if err != nil {
		return nil, err
	}
	return model.FromWeightsWith(f.Weights(cfg), cfg, nil, b, model.Options{DType: dt, Context: ctx})
}

// modelConfig is the config of a checkpoint directory or GGUF file.
func modelConfig(path string) (*hfconfig.Config, error) {
	if gguf.IsFile(path) {
		f, err := gguf.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return f.HFConfig()
	}
	return hfconfig.Load(path)
}

// tokenizerDir is where a model's tokenizer files are: its directory, or
// the folder of a GGUF file.
func tokenizerDir(path string) string {
	if gguf.IsFile(path) {
		return filepath.Dir(path)
	}
	return path
}
