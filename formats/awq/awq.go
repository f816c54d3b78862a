package awq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/gptqtool/gptqtool/formats/gptq"
)

// Order is AutoAWQ's AWQ_ORDER: nibble j of a packed word holds output
// column 8c+Order[j] of its word column c.
var Order = [8]int{0, 2, 4, 6, 1, 3, 5, 7}

// Bits is the only code width AWQ's gemm format packs.
const Bits = 4

// ErrUnsupported is wrapped by ParseConfig's refusals of AWQ variants this
// package does not read (another version, bit width, zero_point false).
var ErrUnsupported = errors.New("unsupported AWQ variant")

// Config is an AWQ checkpoint's quantization config: config.json's
// quantization_config block (transformers' keys) or AutoAWQ's
// quant_config.json (its own).
type Config struct {
	// Bits is bits or w_bit: 4.
	Bits int
	// GroupSize is group_size or q_group_size; -1 for one group over K.
	GroupSize int
	// ZeroPoint is zero_point: true (asymmetric).
	ZeroPoint bool
	// Version is version, lower case: "gemm".
	Version string
	// ModulesToNotConvert is modules_to_not_convert: a module whose name
	// contains one of them is left unquantized (module.weight).
	ModulesToNotConvert []string
	// File names where the config came from, for errors
	// ("config.json: quantization_config").
	File string
}

// Skipped reports whether the config leaves module (its full name)
// unquantized: its name contains an entry of modules_to_not_convert, as
// AutoAWQ, transformers and vLLM test it.
func (c *Config) Skipped(module string) bool {
	for _, m := range c.ModulesToNotConvert {
		if strings.Contains(module, m) {
			return true
		}
	}
	return false
}

// ParseConfig parses an AWQ config object; file names it in errors.
// Keys (AutoAWQ's AwqConfig and transformers' AwqConfig; vLLM requires the
// first two):
//
//	bits (alias w_bit)              required; 4 only
//	group_size (alias q_group_size) required; -1 or positive
//	zero_point                      true when absent (AutoAWQ); false is refused
//	version                         "gemm" when absent (AutoAWQ); others refused
//	quant_method                    "awq" when present
//	backend (transformers)          "autoawq" when present
//	modules_to_not_convert          none
//
// Other keys are ignored.
func ParseConfig(data []byte, file string) (*Config, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil || doc == nil {
		return nil, fmt.Errorf("awq: %s: want a JSON object: %v", file, err)
	}
	c := &Config{Bits: -1, GroupSize: 0, ZeroPoint: true, Version: "gemm", File: file}
	get := func(dst any, keys ...string) (string, error) {
		for _, k := range keys {
			v, ok := doc[k]
			if !ok || string(bytes.TrimSpace(v)) == "null" {
				continue
			}
			if err := json.Unmarshal(v, dst); err != nil {
				return k, fmt.Errorf("awq: %s: %s: got %s: %w", file, k, bytes.TrimSpace(v), err)
			}
			return k, nil
		}
		return "", nil
	}
	var bits, gs float64
	k, err := get(&bits, "bits", "w_bit")
	if err != nil {
		return nil, err
	}
	if k == "" {
		return nil, fmt.Errorf("awq: %s: missing required key \"bits\" (or \"w_bit\")", file)
	}
	if bits != 4 {
		return nil, fmt.Errorf("awq: %s: %s %v: %w: only 4-bit AWQ is packed as gemm", file, k, bits, ErrUnsupported)
	}
	c.Bits = 4
	if k, err = get(&gs, "group_size", "q_group_size"); err != nil {
		return nil, err
	}
	if k == "" {
		return nil, fmt.Errorf("awq: %s: missing required key \"group_size\" (or \"q_group_size\")", file)
	}
	if gs != math.Trunc(gs) || (gs != -1 && gs <= 0) || gs > math.MaxInt32 {
		return nil, fmt.Errorf("awq: %s: %s %v: want -1 or a positive integer", file, k, gs)
	}
	c.GroupSize = int(gs)
	if _, err := get(&c.ZeroPoint, "zero_point"); err != nil {
		return nil, err
	}
	if !c.ZeroPoint {
		return nil, fmt.Errorf("awq: %s: zero_point false: %w: only AWQ with zero points (asymmetric) is read", file, ErrUnsupported)
	}
	if _, err := get(&c.Version, "version"); err != nil {
		return nil, err
	}
	c.Version = strings.ToLower(c.Version)
	if c.Version != "gemm" {
		return nil, fmt.Errorf("awq: %s: version %q: %w: only \"gemm\" packing is read (gemv, gemv_fast, marlin, exllama and ipex pack differently)", file, c.Version, ErrUnsupported)
	}
	method := "awq"
	if _, err := get(&method, "quant_method"); err != nil {
		return nil, err
	}
	if method != "awq" {
		return nil, fmt.Errorf("awq: %s: quant_method %q, want \"awq\"", file, method)
	}
	backend := "autoawq"
	if _, err := get(&backend, "backend"); err != nil {
		return nil, err
	}
	if strings.ToLower(backend) != "autoawq" {
		return nil, fmt.Errorf("awq: %s: backend %q: %w: only AutoAWQ's packing is read", file, backend, ErrUnsupported)
	}
	if _, err := get(&c.ModulesToNotConvert, "modules_to_not_convert"); err != nil {
		return nil, err
	}
	return c, nil
}

// Groups is G for K inputs: ceil(K/GroupSize), 1 for GroupSize -1.
func (c *Config) Groups(K int) int { return gptq.Groups(K, c.GroupSize) }

// Unpack returns the values [rows, N] uint8 of words [rows, N/8] int32
// packed in AWQ's order (Order).
func Unpack(words []int32, rows, N int) ([]uint8, error) {
	if N%8 != 0 || rows < 0 || len(words) != rows*N/8 {
		return nil, fmt.Errorf("awq: unpack: %d words for [%d, %d/8]", len(words), rows, N)
	}
	out := make([]uint8, rows*N)
	for i, w := range words {
		u := uint32(w)
		base := i * 8 // row i/(N/8), columns 8*(i%(N/8)).. : the same index
		for j, col := range Order {
			out[base+col] = uint8(u>>(4*j)) & 0xf
		}
	}
	return out, nil
}

// ToGPTQ returns one AWQ Linear of K inputs and N outputs (qweight [K,
// N/8], qzeros [G, N/8], scales [G, N] fp16 bits) as a gptq.Linear in
// FormatV2 (real zero points) with g_idx k/groupSize: the same codes,
// scales and zero points, dequantizing to the same weights.
func ToGPTQ(qweight, qzeros []int32, scales []uint16, K, N, groupSize int) (*gptq.Linear, error) {
	G := gptq.Groups(K, groupSize)
	if G == 0 || N <= 0 || N%8 != 0 {
		return nil, fmt.Errorf("awq: K %d, N %d, group size %d: want K > 0 and N a multiple of 8", K, N, groupSize)
	}
	switch {
	case len(qweight) != K*N/8:
		return nil, fmt.Errorf("awq: qweight: %w: %d elements, want [%d %d]", gptq.ErrShape, len(qweight), K, N/8)
	case len(qzeros) != G*N/8:
		return nil, fmt.Errorf("awq: qzeros: %w: %d elements, want [%d %d]", gptq.ErrShape, len(qzeros), G, N/8)
	case len(scales) != G*N:
		return nil, fmt.Errorf("awq: scales: %w: %d elements, want [%d %d]", gptq.ErrShape, len(scales), G, N)
	}
	q, err := Unpack(qweight, K, N)
	if err != nil {
		return nil, err
	}
	z, err := Unpack(qzeros, G, N)
	if err != nil {
		return nil, err
	}
	l := &gptq.Linear{K: K, N: N, Bits: Bits, GroupSize: groupSize, Scales: scales, Format: gptq.FormatV2}
	if l.QWeight, err = gptq.PackQWeight(q, K, N, Bits); err != nil {
		return nil, fmt.Errorf("awq: %w", err)
	}
	if l.QZeros, err = gptq.PackQZeros(z, G, N, Bits, gptq.FormatV2); err != nil {
		return nil, fmt.Errorf("awq: %w", err)
	}
	l.GIdx = gptq.GIdx(K, groupSize, nil, false) // no act order: the trivial g_idx
	return l, nil
}
