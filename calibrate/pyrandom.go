package calibrate

import "math/bits"

// MT19937 parameters (Matsumoto & Nishimura 1998, mt19937ar.c).
const (
	mtN         = 624
	mtM         = 397
	mtMatrixA   = 0x9908b0df
	mtUpperMask = 0x80000000
	mtLowerMask = 0x7fffffff
)

// PyRandom reproduces the integer methods of CPython's random.Random
// (Lib/random.py over Modules/_randommodule.c): the same seed gives the same
// sequence as Python on every machine. It is not safe for concurrent use.
type PyRandom struct {
	mt  [mtN]uint32
	mti int
}

// NewPyRandom returns a generator in the state of Python's
// random.seed(seed): MT19937 seeded by init_by_array over the 32-bit words of
// |seed|, least significant word first (seed 0 gives the key [0]).
func NewPyRandom(seed int64) *PyRandom {
	mag := uint64(seed)
	if seed < 0 {
		mag = -mag // two's complement: correct magnitude also for math.MinInt64
	}
	key := []uint32{uint32(mag)}
	if hi := uint32(mag >> 32); hi != 0 {
		key = append(key, hi)
	}
	r := &PyRandom{}
	r.initByArray(key)
	return r
}

// newMT19937 returns a generator seeded by mt19937ar's init_genrand(s); used
// by tests against the canonical reference output.
func newMT19937(s uint32) *PyRandom {
	r := &PyRandom{}
	r.initGenrand(s)
	return r
}

func (r *PyRandom) initGenrand(s uint32) {
	r.mt[0] = s
	for i := 1; i < mtN; i++ {
		r.mt[i] = 1812433253*(r.mt[i-1]^(r.mt[i-1]>>30)) + uint32(i)
	}
	r.mti = mtN
}

func (r *PyRandom) initByArray(key []uint32) {
	r.initGenrand(19650218)
	i, j := 1, 0
	k := max(mtN, len(key))
	for ; k > 0; k-- {
		r.mt[i] = (r.mt[i] ^ ((r.mt[i-1] ^ (r.mt[i-1] >> 30)) * 1664525)) + key[j] + uint32(j)
		i++
		j++
		if i >= mtN {
			r.mt[0] = r.mt[mtN-1]
			i = 1
		}
		if j >= len(key) {
			j = 0
		}
	}
	for k = mtN - 1; k > 0; k-- {
		r.mt[i] = (r.mt[i] ^ ((r.mt[i-1] ^ (r.mt[i-1] >> 30)) * 1566083941)) - uint32(i)
		i++
		if i >= mtN {
			r.mt[0] = r.mt[mtN-1]
			i = 1
		}
	}
	r.mt[0] = 0x80000000 // MSB is 1, assuring a non-zero initial array
}

// uint32 is mt19937ar's genrand_int32.
func (r *PyRandom) uint32() uint32 {
	if r.mti >= mtN {
		var kk int
		for kk = 0; kk < mtN-mtM; kk++ {
			y := (r.mt[kk] & mtUpperMask) | (r.mt[kk+1] & mtLowerMask)
			r.mt[kk] = r.mt[kk+mtM] ^ (y >> 1) ^ ((y & 1) * mtMatrixA)
		}
		for ; kk < mtN-1; kk++ {
			y := (r.mt[kk] & mtUpperMask) | (r.mt[kk+1] & mtLowerMask)
			r.mt[kk] = r.mt[kk+(mtM-mtN)] ^ (y >> 1) ^ ((y & 1) * mtMatrixA)
		}
		y := (r.mt[mtN-1] & mtUpperMask) | (r.mt[0] & mtLowerMask)
		r.mt[mtN-1] = r.mt[mtM-1] ^ (y >> 1) ^ ((y & 1) * mtMatrixA)
		r.mti = 0
	}
	y := r.mt[r.mti]
	r.mti++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// GetRandBits returns a k-bit random integer like Python's
// random.getrandbits(k) for 0 <= k <= 64: one 32-bit output shifted right by
// 32-k for k <= 32; above that, whole 32-bit words least significant first,
// the last word shifted down to the bits that remain. It panics when k is
// outside [0, 64] (a programming error: callers derive k from a bit length).
func (r *PyRandom) GetRandBits(k int) uint64 {
	switch {
	case k < 0 || k > 64:
		panic("calibrate: GetRandBits: k out of range [0, 64]")
	case k == 0:
		return 0
	case k <= 32:
		return uint64(r.uint32() >> (32 - k))
	}
	lo := uint64(r.uint32())
	hi := uint64(r.uint32() >> (64 - k))
	return hi<<32 | lo
}

// randBelow is Python's Random._randbelow_with_getrandbits: a uniform integer
// in [0, n) by rejection over n.bit_length() bits. n must be positive.
func (r *PyRandom) randBelow(n uint64) uint64 {
	k := bits.Len64(n)
	v := r.GetRandBits(k)
	for v >= n {
		v = r.GetRandBits(k)
	}
	return v
}

// Randint returns a uniform integer in [a, b], both ends included, consuming
// the generator exactly as Python's random.randint(a, b) does. It panics when
// b < a (Python raises ValueError); callers validate their bounds.
func (r *PyRandom) Randint(a, b int) int {
	if b < a {
		panic("calibrate: Randint: empty range")
	}
	n := uint64(b) - uint64(a) + 1 // wraps to 0 only for the full int64 range
	if n == 0 {
		// n = 2**64 needs 65 bits: Python draws three words and rejects
		// when the 65th bit is set.
		for {
			lo := uint64(r.uint32())
			hi := uint64(r.uint32())
			if r.uint32()>>31 == 0 {
				return a + int(hi<<32|lo)
			}
		}
	}
	return a + int(r.randBelow(n))
}

// Shuffle permutes n elements through swap like Python's
// random.shuffle(x) on a list of length n: for i from n-1 down to 1, swap i
// with randbelow(i+1).
func (r *PyRandom) Shuffle(n int, swap func(i, j int)) {
	for i := n - 1; i > 0; i-- {
		j := int(r.randBelow(uint64(i + 1)))
		swap(i, j)
	}
}
