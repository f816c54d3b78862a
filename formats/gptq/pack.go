package gptq

import (
	"errors"
	"fmt"
	"math"
	goruntime "runtime"
	"sync"
)

// Format is the checkpoint_format of a GPTQ checkpoint: how qzeros is stored.
type Format string

const (
	// FormatV1 ("gptq") stores each zero point minus one (spec §1.4); the
	// format every loader reads by default.
	FormatV1 Format = "gptq"
	// FormatV2 ("gptq_v2", GPTQModel) stores the real zero point.
	FormatV2 Format = "gptq_v2"
)

// ErrShape is wrapped by errors about tensor shapes or lengths that do not fit
// the packed layout.
var ErrShape = errors.New("invalid shape")

// ErrBadScale is wrapped by errors about scales that are NaN, infinite or
// zero: no quantizer writes them, and they make their group's weights NaN or 0.
var ErrBadScale = errors.New("damaged scale")

// maxElems bounds K*N so that index arithmetic cannot overflow and a corrupt
// header cannot ask for an absurd allocation (2^34 codes = 16 GiB).
const maxElems = 1 << 34

// CheckBits returns an error unless bits is 2, 3, 4 or 8.
func CheckBits(bits int) error {
	switch bits {
	case 2, 3, 4, 8:
		return nil
	}
	return fmt.Errorf("bits %d: want 2, 3, 4 or 8", bits)
}

// PackedLen returns how many int32 words hold n values of the given width
// along the packed axis, or an error when n*bits is not a whole number of
// words (for 3 bits n must be a multiple of 32; spec §1.2-1.3).
func PackedLen(n, bits int) (int, error) {
	if err := CheckBits(bits); err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, fmt.Errorf("%w: length %d, want > 0", ErrShape, n)
	}
	if n*bits%32 != 0 {
		return 0, fmt.Errorf("%w: %d values of %d bits do not fill whole int32 words (need a multiple of %d)", ErrShape, n, bits, 32/gcd(bits, 32))
	}
	return n * bits / 32, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func checkDims(rows, cols int) error {
	if rows <= 0 || cols <= 0 {
		return fmt.Errorf("%w: [%d, %d], want positive dimensions", ErrShape, rows, cols)
	}
	if int64(rows)*int64(cols) > maxElems {
		return fmt.Errorf("%w: [%d, %d] has more than 2^34 elements", ErrShape, rows, cols)
	}
	return nil
}

// PackQWeight packs codes q [K, N] (row-major, each in [0, 2^bits)) along the
// K axis into qweight [K*bits/32, N] int32 (spec §1.2, §1.3).
//
// Packing is an LSB-first bit stream per column: code k sits at stream bit
// bits*k, i.e. word (bits*k)/32, bit (bits*k)%32. For 2, 4 and 8 bits no code
// crosses a word; for 3 bits this is exactly the AutoGPTQ layout of 32 codes in
// 3 words, with codes 10 and 21 straddling words.
func PackQWeight(q []uint8, K, N, bits int) ([]int32, error) {
	rows, err := PackedLen(K, bits)
	if err != nil {
		return nil, fmt.Errorf("gptq: pack qweight: K=%d: %w", K, err)
	}
	if err := checkDims(K, N); err != nil {
		return nil, fmt.Errorf("gptq: pack qweight: %w", err)
	}
	if len(q) != K*N {
		return nil, fmt.Errorf("gptq: pack qweight: %w: got %d codes, want K*N = %d*%d = %d", ErrShape, len(q), K, N, K*N)
	}
	out := make([]int32, rows*N)
	if err := packStream(out, q, K, N, bits); err != nil {
		return nil, fmt.Errorf("gptq: pack qweight: %w", err)
	}
	return out, nil
}

// UnpackQWeight is the inverse of PackQWeight: qweight [K*bits/32, N] to
// codes q [K, N] (UnpackQWeightPermuted in the identity order).
func UnpackQWeight(qweight []int32, K, N, bits int) ([]uint8, error) {
	return UnpackQWeightPermuted(qweight, K, N, bits, nil, nil)
}

// PackQZeros packs real zero points z [G, N] along the N axis into qzeros
// [G, N*bits/32] int32. FormatV1 stores z-1 (spec §1.4), so a zero point of 0
// is an error there; FormatV2 stores z.
func PackQZeros(z []uint8, G, N, bits int, format Format) ([]int32, error) {
	cols, err := PackedLen(N, bits)
	if err != nil {
		return nil, fmt.Errorf("gptq: pack qzeros: N=%d: %w", N, err)
	}
	if err := checkDims(G, N); err != nil {
		return nil, fmt.Errorf("gptq: pack qzeros: %w", err)
	}
	if len(z) != G*N {
		return nil, fmt.Errorf("gptq: pack qzeros: %w: got %d zero points, want G*N = %d*%d = %d", ErrShape, len(z), G, N, G*N)
	}
	stored := z
	switch format {
	case FormatV1:
		stored = make([]uint8, len(z))
		for i, v := range z {
			if v == 0 {
				return nil, fmt.Errorf("gptq: pack qzeros: zero point 0 at [%d, %d] cannot be stored in format %q, which stores zero-1 (use sym or %q)", i/N, i%N, FormatV1, FormatV2)
			}
			stored[i] = v - 1
		}
	case FormatV2:
	default:
		return nil, fmt.Errorf("gptq: pack qzeros: checkpoint format %q: want %q or %q", format, FormatV1, FormatV2)
	}
	out := make([]int32, G*cols)
	for g := range G {
		// A row of qzeros is one stream over N values: a [N, 1] column.
		if err := packStream(out[g*cols:(g+1)*cols], stored[g*N:(g+1)*N], N, 1, bits); err != nil {
			return nil, fmt.Errorf("gptq: pack qzeros: row %d: %w", g, err)
		}
	}
	return out, nil
}

// UnpackQZeros is the inverse of PackQZeros: qzeros [G, N*bits/32] to real
// zero points [G, N]. In FormatV1 a stored 2^bits-1 would mean a real zero of
// 2^bits; for 8 bits that does not fit a uint8 and is an error (Linear's
// Dequantize handles it as the loaders do).
func UnpackQZeros(qzeros []int32, G, N, bits int, format Format) ([]uint8, error) {
	z, err := unpackZeros(qzeros, G, N, bits, format)
	if err != nil {
		return nil, err
	}
	out := make([]uint8, len(z))
	for i, v := range z {
		if v > math.MaxUint8 {
			return nil, fmt.Errorf("gptq: unpack qzeros: zero point %d at [%d, %d] does not fit in 8 bits", v, i/N, i%N)
		}
		out[i] = uint8(v)
	}
	return out, nil
}

// unpackZeros returns real zero points as int32 ([G, N]), so that the v1
// value 2^bits (stored all ones) survives for 8 bits.
func unpackZeros(qzeros []int32, G, N, bits int, format Format) ([]int32, error) {
	cols, err := PackedLen(N, bits)
	if err != nil {
		return nil, fmt.Errorf("gptq: unpack qzeros: N=%d: %w", N, err)
	}
	if err := checkDims(G, N); err != nil {
		return nil, fmt.Errorf("gptq: unpack qzeros: %w", err)
	}
	if len(qzeros) != G*cols {
		return nil, fmt.Errorf("gptq: unpack qzeros: %w: got %d words, want [%d, %d] = %d", ErrShape, len(qzeros), G, cols, G*cols)
	}
	var add int32
	switch format {
	case FormatV1:
		add = 1
	case FormatV2:
	default:
		return nil, fmt.Errorf("gptq: unpack qzeros: checkpoint format %q: want %q or %q", format, FormatV1, FormatV2)
	}
	codes := make([]uint8, G*N)
	for g := range G {
		unpackStream(codes[g*N:(g+1)*N], qzeros[g*cols:(g+1)*cols], N, 1, bits)
	}
	out := make([]int32, len(codes))
	for i, c := range codes {
		out[i] = int32(c) + add
	}
	return out, nil
}

// packStream packs src [L, C] along L into dst [L*bits/32, C] as LSB-first
// bit streams, one per column. dst must be zeroed.
func packStream(dst []int32, src []uint8, L, C, bits int) error {
	maxCode := uint8(1<<bits - 1)
	for i, v := range src {
		if v > maxCode {
			return fmt.Errorf("code %d at [%d, %d] out of range [0, %d] for %d bits", v, i/C, i%C, maxCode, bits)
		}
	}
	if 32%bits == 0 {
		pf := 32 / bits
		for r := 0; r < L/pf; r++ {
			row := dst[r*C : (r+1)*C]
			for j := range pf {
				s := src[(r*pf+j)*C : (r*pf+j+1)*C]
				row := row[:len(s)] // lets the compiler drop bounds checks
				shift := uint(bits * j)
				for c, v := range s {
					row[c] = int32(uint32(row[c]) | uint32(v)<<shift)
				}
			}
		}
		return nil
	}
	for l := range L {
		pos := bits * l
		w, off := pos>>5, uint(pos&31)
		s := src[l*C : (l+1)*C]
		row := dst[w*C : (w+1)*C]
		row = row[:len(s)]
		for c, v := range s {
			row[c] = int32(uint32(row[c]) | uint32(v)<<off)
		}
		if int(off)+bits > 32 {
			next := dst[(w+1)*C : (w+2)*C]
			next = next[:len(s)]
			for c, v := range s {
				next[c] = int32(uint32(next[c]) | uint32(v)>>(32-off))
			}
		}
	}
	return nil
}

// unpackStream is the inverse of packStream: src [L*bits/32, C] to dst [L, C].
func unpackStream(dst []uint8, src []int32, L, C, bits int) {
	mask := uint32(1)<<bits - 1
	if 32%bits == 0 {
		pf := 32 / bits
		for r := 0; r < L/pf; r++ {
			row := src[r*C : (r+1)*C]
			for j := range pf {
				d := dst[(r*pf+j)*C : (r*pf+j+1)*C]
				d = d[:len(row)] // lets the compiler drop bounds checks
				shift := uint(bits * j)
				for c, v := range row {
					d[c] = uint8(uint32(v) >> shift & mask)
				}
			}
		}
		return
	}
	for l := range L {
		pos := bits * l
		w, off := pos>>5, uint(pos&31)
		d := dst[l*C : (l+1)*C]
		row := src[w*C : (w+1)*C]
		row = row[:len(d)]
		if int(off)+bits > 32 {
			next := src[(w+1)*C : (w+2)*C]
			next = next[:len(d)]
			for c := range d {
				d[c] = uint8((uint32(row[c])>>off | uint32(next[c])<<(32-off)) & mask)
			}
			continue
		}
		for c := range d {
			d[c] = uint8(uint32(row[c]) >> off & mask)
		}
	}
}

// UnpackQWeightPermuted is UnpackQWeight with the rows and columns of the
// result reordered in the same pass: result[k][j] = q[perm[k]][cols[j]],
// q the codes [K, N] of qweight [K*bits/32, N]. perm (length K) and cols
// (length N) are permutations, or nil for the identity. It reads qweight
// once, in order, and writes each result row once, from GOMAXPROCS
// goroutines.
func UnpackQWeightPermuted(qweight []int32, K, N, bits int, perm, cols []int32) ([]uint8, error) {
	rows, err := PackedLen(K, bits)
	if err != nil {
		return nil, fmt.Errorf("gptq: unpack qweight: K=%d: %w", K, err)
	}
	if err := checkDims(K, N); err != nil {
		return nil, fmt.Errorf("gptq: unpack qweight: %w", err)
	}
	if len(qweight) != rows*N {
		return nil, fmt.Errorf("gptq: unpack qweight: %w: got %d words, want [%d, %d] = %d", ErrShape, len(qweight), rows, N, rows*N)
	}
	// slot[l] is the result row of code row l.
	slot, err := inverse(perm, K)
	if err != nil {
		return nil, fmt.Errorf("gptq: unpack qweight: row order: %w", err)
	}
	if _, err := inverse(cols, N); err != nil {
		return nil, fmt.Errorf("gptq: unpack qweight: column order: %w", err)
	}
	out := make([]uint8, K*N)
	mask := uint32(1)<<bits - 1
	// Code rows in runs of unit, a whole number of words: one word row
	// for 2, 4 and 8 bits, read once for its pf code rows.
	unit := 32 / gcd(bits, 32)
	parallel(K/unit, func(r0, r1 int) {
		d := make([][]uint8, unit)
		var gathered []int32
		if cols != nil {
			gathered = make([]int32, N)
		}
		for run := r0; run < r1; run++ {
			l0 := unit * run
			for i := range d {
				s := int(slot[l0+i])
				d[i] = out[s*N : (s+1)*N]
			}
			if 32%bits == 0 {
				src := qweight[run*N : (run+1)*N]
				if cols != nil {
					for j, c := range cols {
						gathered[j] = src[c]
					}
					src = gathered
				}
				if bits == 4 {
					spread4(d, src)
					continue
				}
				for i, di := range d {
					di = di[:len(src)] // lets the compiler drop bounds checks
					shift := uint(bits * i)
					for j, v := range src {
						di[j] = uint8(uint32(v) >> shift & mask)
					}
				}
				continue
			}
			for i, di := range d {
				pos := bits * (l0 + i)
				w, off := pos>>5, uint(pos&31)
				src := qweight[w*N : (w+1)*N]
				var next []int32
				if int(off)+bits > 32 {
					next = qweight[(w+1)*N : (w+2)*N]
				}
				for j := range N {
					c := j
					if cols != nil {
						c = int(cols[j])
					}
					v := uint32(src[c]) >> off
					if next != nil {
						v |= uint32(next[c]) << (32 - off)
					}
					di[j] = uint8(v & mask)
				}
			}
		}
	})
	return out, nil
}

// spread4 writes the eight 4-bit codes of each word of src to the rows d,
// lowest bits first: one read of a word for its eight codes.
func spread4(d [][]uint8, src []int32) {
	n := len(src)
	d0, d1, d2, d3 := d[0][:n], d[1][:n], d[2][:n], d[3][:n]
	d4, d5, d6, d7 := d[4][:n], d[5][:n], d[6][:n], d[7][:n]
	for j, v := range src {
		u := uint32(v)
		d0[j], d1[j], d2[j], d3[j] = uint8(u&15), uint8(u>>4&15), uint8(u>>8&15), uint8(u>>12&15)
		d4[j], d5[j], d6[j], d7[j] = uint8(u>>16&15), uint8(u>>20&15), uint8(u>>24&15), uint8(u>>28)
	}
}

// inverse returns the inverse of the permutation p of 0..n-1 (p nil: the
// identity), or an error when p is not one.
func inverse(p []int32, n int) ([]int32, error) {
	inv := make([]int32, n)
	if p == nil {
		for i := range inv {
			inv[i] = int32(i)
		}
		return inv, nil
	}
	if len(p) != n {
		return nil, fmt.Errorf("%w: %d entries, want %d", ErrShape, len(p), n)
	}
	for i := range inv {
		inv[i] = -1
	}
	for i, v := range p {
		if v < 0 || int(v) >= n || inv[v] >= 0 {
			return nil, fmt.Errorf("entry %d = %d is out of range [0, %d) or repeated", i, v, n)
		}
		inv[v] = int32(i)
	}
	return inv, nil
}

// parallel calls fn on ranges covering [0, n) from up to GOMAXPROCS
// goroutines.
func parallel(n int, fn func(i0, i1 int)) {
	workers := min(goruntime.GOMAXPROCS(0), n)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { fn(n*w/workers, n*(w+1)/workers) })
	}
	wg.Wait()
}
