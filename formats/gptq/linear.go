package gptq

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/x448/float16"
)

// Groups returns G, the number of quantization groups along K:
// ceil(K/groupSize), or 1 when groupSize is -1 (one group over all of K).
// It returns 0 for an invalid groupSize (0 or below -1) or K <= 0.
func Groups(K, groupSize int) int {
	if K <= 0 {
		return 0
	}
	if groupSize == -1 {
		return 1
	}
	if groupSize <= 0 {
		return 0
	}
	return (K + groupSize - 1) / groupSize
}

// GIdx returns g_idx [K] int32, the group of each input row (spec §1.5).
// groupSize -1 means one group of K. perm is the act-order processing order
// (perm[i] = the input column quantized i-th), nil without act-order.
//
//   - perm nil, or staticGroups: g_idx[k] = k/groupSize (static groups take
//     their parameters in the original column order, so g_idx is trivial).
//   - perm given, !staticGroups: g_idx[perm[i]] = i/groupSize, so scales row t
//     belongs to the t-th group of the processing order.
//
// GIdx panics if perm is not a permutation of 0..K-1 or groupSize is invalid:
// both come from our own quantizer, never from a file (see CheckPerm).
func GIdx(K, groupSize int, perm []int, staticGroups bool) []int32 {
	gs := groupSize
	if gs == -1 {
		gs = K
	}
	if gs <= 0 || K < 0 {
		panic(fmt.Sprintf("gptq: GIdx: K=%d groupSize=%d", K, groupSize))
	}
	g := make([]int32, K)
	if perm == nil || staticGroups {
		for k := range g {
			g[k] = int32(k / gs)
		}
		return g
	}
	if err := CheckPerm(perm, K); err != nil {
		panic("gptq: GIdx: " + err.Error())
	}
	for i, c := range perm {
		g[c] = int32(i / gs)
	}
	return g
}

// CheckPerm returns an error unless perm is a permutation of 0..K-1.
func CheckPerm(perm []int, K int) error {
	if len(perm) != K {
		return fmt.Errorf("perm has %d entries, want K=%d", len(perm), K)
	}
	seen := make([]bool, K)
	for i, c := range perm {
		if c < 0 || c >= K || seen[c] {
			return fmt.Errorf("perm[%d]=%d: not a permutation of 0..%d", i, c, K-1)
		}
		seen[c] = true
	}
	return nil
}

// ShapesFor returns the tensor shapes of one quantized Linear with K inputs
// and N outputs (spec §1.1):
//
//	qweight [K*bits/32, N] int32
//	qzeros  [G, N*bits/32] int32
//	scales  [G, N]         float16
//	g_idx   [K]            int32, returned as [K, 0]: a 0 second dimension marks rank 1
//
// The error says which dimension does not allow the bits/groupSize combination.
func ShapesFor(K, N, bits, groupSize int) (qweight, qzeros, scales, gIdx [2]int, err error) {
	if err = CheckBits(bits); err != nil {
		return
	}
	if groupSize != -1 && groupSize <= 0 {
		err = fmt.Errorf("group size %d: want -1 or a positive integer", groupSize)
		return
	}
	if err = checkDims(K, N); err != nil {
		return
	}
	rows, e := PackedLen(K, bits)
	if e != nil {
		err = fmt.Errorf("in features K=%d cannot be packed at %d bits: qweight packs K along its rows: %w (%s)", K, bits, e, packingBits(K, N))
		return
	}
	cols, e := PackedLen(N, bits)
	if e != nil {
		err = fmt.Errorf("out features N=%d cannot be packed at %d bits: qzeros packs N along its columns: %w (%s)", N, bits, e, packingBits(K, N))
		return
	}
	G := Groups(K, groupSize)
	return [2]int{rows, N}, [2]int{G, cols}, [2]int{G, N}, [2]int{K, 0}, nil
}

// packingBits says which bit widths pack a Linear of K inputs and N
// outputs (both whole int32 words), for an error about one that does not.
func packingBits(K, N int) string {
	var ok []string
	for _, b := range []int{2, 3, 4, 8} {
		if _, e := PackedLen(K, b); e != nil {
			continue
		}
		if _, e := PackedLen(N, b); e != nil {
			continue
		}
		ok = append(ok, strconv.Itoa(b))
	}
	switch len(ok) {
	case 0:
		return "no bit width packs it"
	case 1:
		return ok[0] + " bits packs it"
	}
	return strings.Join(ok[:len(ok)-1], ", ") + " or " + ok[len(ok)-1] + " bits pack it"
}

// Linear is one GPTQ-quantized nn.Linear as stored on disk (spec §1.1).
// All matrices are row-major.
type Linear struct {
	K, N      int // in features, out features
	Bits      int
	GroupSize int      // -1: one group over K
	QWeight   []int32  // [K*bits/32, N]
	QZeros    []int32  // [G, N*bits/32], per Format
	Scales    []uint16 // [G, N] float16 bits
	GIdx      []int32  // [K], values in [0, G)
	Format    Format   // "" reads as FormatV1
}

func (l *Linear) format() Format {
	if l.Format == "" {
		return FormatV1
	}
	return l.Format
}

// Validate checks that the tensor lengths match K, N, Bits and GroupSize and
// that every g_idx value lies in [0, G). name (e.g. the HF module name) heads
// the error.
func (l *Linear) Validate(name string) error {
	qw, qz, sc, _, err := ShapesFor(l.K, l.N, l.Bits, l.GroupSize)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if f := l.format(); f != FormatV1 && f != FormatV2 {
		return fmt.Errorf("%s: checkpoint format %q: want %q or %q", name, f, FormatV1, FormatV2)
	}
	check := []struct {
		tensor string
		got    int
		shape  [2]int
	}{
		{"qweight", len(l.QWeight), qw},
		{"qzeros", len(l.QZeros), qz},
		{"scales", len(l.Scales), sc},
	}
	for _, c := range check {
		if c.got != c.shape[0]*c.shape[1] {
			return fmt.Errorf("%s.%s: %w: %d elements, want [%d %d] = %d", name, c.tensor, ErrShape, c.got, c.shape[0], c.shape[1], c.shape[0]*c.shape[1])
		}
	}
	if len(l.GIdx) != l.K {
		return fmt.Errorf("%s.g_idx: %w: %d elements, want [%d]", name, ErrShape, len(l.GIdx), l.K)
	}
	G := int32(qz[0])
	for k, g := range l.GIdx {
		if g < 0 || g >= G {
			return fmt.Errorf("%s.g_idx: g_idx[%d]=%d out of range [0, %d)", name, k, g, G)
		}
	}
	return checkScales(name, l.Scales, l.N)
}

// checkScales refuses scales that no quantizer writes and that would turn
// every weight of their group into NaN, Inf or 0: a damaged checkpoint.
// scales [G, N] float16 bits.
func checkScales(name string, scales []uint16, N int) error {
	for i, h := range scales {
		switch f := float16.Frombits(h); {
		case f.IsNaN(), f.IsInf(0):
			return fmt.Errorf("%s.scales: %w: scales[%d][%d] is %v, want a finite non-zero value", name, ErrBadScale, i/N, i%N, f.Float32())
		case f.Float32() == 0:
			return fmt.Errorf("%s.scales: %w: scales[%d][%d] is 0, want a finite non-zero value", name, ErrBadScale, i/N, i%N)
		}
	}
	return nil
}

// ZeroPoints returns the real zero points [G, N] (stored+1 in FormatV1),
// as int32 so that the v1 value 2^bits survives for 8 bits.
func (l *Linear) ZeroPoints() ([]int32, error) {
	return unpackZeros(l.QZeros, Groups(l.K, l.GroupSize), l.N, l.Bits, l.format())
}

// Dequantize returns W [N, K] float32 in the HF nn.Linear layout (spec §1.1):
//
//	W[n,k] = scales[g_idx[k], n] * (q[k,n] - zero[g_idx[k], n])
//
// where zero is the real zero point (stored+1 in FormatV1). The product is
// computed in float32 from the fp16 scale and the exact integer difference.
func (l *Linear) Dequantize() ([]float32, error) {
	if err := l.Validate("linear"); err != nil {
		return nil, fmt.Errorf("gptq: dequantize: %w", err)
	}
	K, N := l.K, l.N
	G := Groups(K, l.GroupSize)
	q, err := UnpackQWeight(l.QWeight, K, N, l.Bits)
	if err != nil {
		return nil, fmt.Errorf("gptq: dequantize: %w", err)
	}
	z, err := unpackZeros(l.QZeros, G, N, l.Bits, l.format())
	if err != nil {
		return nil, fmt.Errorf("gptq: dequantize: %w", err)
	}
	scales := make([]float32, len(l.Scales))
	for i, h := range l.Scales {
		scales[i] = float16.Frombits(h).Float32()
	}
	w := make([]float32, N*K)
	for k := range K {
		g := int(l.GIdx[k])
		qrow := q[k*N : (k+1)*N]
		zrow := z[g*N : (g+1)*N]
		srow := scales[g*N : (g+1)*N]
		for n, qv := range qrow {
			w[n*K+k] = srow[n] * float32(int32(qv)-zrow[n])
		}
	}
	return w, nil
}
