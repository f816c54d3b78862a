package jinja

import (
	"errors"
	"fmt"
	"math"
	"math/big"
)

// Python's ints are unbounded. An int in int64's range is an int64; one
// past it a bigInt, which no operation mutates. mkInt keeps the two
// apart, so that an int64 and a bigInt never hold the same number.

// bigInt is a Python int past int64's range, at most maxIntBits bits.
type bigInt struct{ v *big.Int }

// maxIntBits bounds a bigInt, as the render bounds strings: Python's
// ints grow until memory runs out, and its str() refuses an int past
// maxStrDigits decimal digits (about 14,300 bits) anyway.
const maxIntBits = 1 << 17

// maxStrDigits is Python's default sys.get_int_max_str_digits(): the
// most decimal digits str() writes of an int or int() reads.
const maxStrDigits = 4300

// errIntRange is an integer past maxIntBits, which Python's ints hold
// and this package's do not.
var errIntRange = fmt.Errorf("integer too large: one past %d bits is not supported", maxIntBits)

// errIntFloat is Python's OverflowError for an int past float64's range
// made a float.
var errIntFloat = errors.New("int too large to convert to float")

// errIndexSize is Python's OverflowError for an int past a C ssize_t
// where one is needed (a repeat count).
var errIndexSize = errors.New("cannot fit 'int' into an index-sized integer")

// mkInt is b as a value: an int64 where it fits, else a bigInt; an
// error past maxIntBits. b is not copied: the caller gives it up.
func mkInt(b *big.Int) (value, error) {
	if b.IsInt64() {
		return b.Int64(), nil
	}
	if b.BitLen() > maxIntBits {
		return nil, errIntRange
	}
	return bigInt{b}, nil
}

// bigOf returns an int, bigInt or bool as a *big.Int the caller may
// not change (a bigInt's own).
func bigOf(v value) (*big.Int, bool) {
	switch x := v.(type) {
	case int64:
		return big.NewInt(x), true
	case bool:
		return big.NewInt(b2i(x)), true
	case bigInt:
		return x.v, true
	}
	return nil, false
}

// isNumber reports whether v is a Python number (a bool too).
func isNumber(v value) bool {
	_, ok := num(v)
	return ok
}

// isInt reports whether v is a Python int (a bool too).
func isInt(v value) bool {
	switch v.(type) {
	case int64, bool, bigInt:
		return true
	}
	return false
}

// bigFloat is Python's float(b): the nearest float64 (ties to even), an
// error where that is past float64's range.
func bigFloat(b *big.Int) (float64, error) {
	f, _ := new(big.Float).SetInt(b).Float64()
	if math.IsInf(f, 0) {
		return 0, errIntFloat
	}
	return f, nil
}

// intString is Python's str() of an int, refused past maxStrDigits
// digits as Python refuses it.
func intString(b *big.Int) (string, error) {
	s := b.String()
	digits := len(s)
	if b.Sign() < 0 {
		digits--
	}
	if digits > maxStrDigits {
		return "", fmt.Errorf("Exceeds the limit (%d digits) for integer string conversion; use sys.set_int_max_str_digits() to increase the limit", maxStrDigits)
	}
	return s, nil
}

// bigArith is a op b of Python ints: +, -, *, / (a float, rounded once),
// // and % (floored).
func bigArith(op string, a, b *big.Int) (value, error) {
	z := new(big.Int)
	switch op {
	case "+":
		z.Add(a, b)
	case "-":
		z.Sub(a, b)
	case "*":
		if a.BitLen()+b.BitLen() > maxIntBits+1 {
			return nil, errIntRange
		}
		z.Mul(a, b)
	case "/":
		if b.Sign() == 0 {
			return nil, errors.New("division by zero")
		}
		q, _ := new(big.Rat).SetFrac(a, b).Float64()
		if math.IsInf(q, 0) {
			return nil, errors.New("integer division result too large for a float")
		}
		return q, nil
	case "//", "%":
		if b.Sign() == 0 {
			return nil, zeroDivision(op, false)
		}
		m := new(big.Int)
		z.QuoRem(a, b, m)
		if m.Sign() != 0 && m.Sign() != b.Sign() {
			z.Sub(z, big.NewInt(1))
			m.Add(m, b)
		}
		if op == "%" {
			z = m
		}
	default:
		return nil, fmt.Errorf("unsupported operand type(s) for %s: 'int' and 'int'", op)
	}
	return mkInt(z)
}

// bigPow is a ** e of Python ints, e >= 0.
func bigPow(a, e *big.Int) (value, error) {
	switch {
	case e.Sign() == 0:
		return int64(1), nil
	case a.Sign() == 0 || a.CmpAbs(big.NewInt(1)) == 0:
		if a.Sign() < 0 && e.Bit(0) == 0 {
			return int64(1), nil
		}
		return mkInt(new(big.Int).Set(a))
	case !e.IsInt64() || e.Int64() > maxIntBits || int64(a.BitLen()-1)*e.Int64() > maxIntBits:
		return nil, errIntRange
	}
	return mkInt(new(big.Int).Exp(a, e, nil))
}

// cmpNum orders two numbers (bools, ints and floats) exactly, as Python
// compares them: an int with a float by their values, not the int made
// a float. ok is false where either is not a number or is NaN.
func cmpNum(a, b value) (c int, ok bool) {
	ai, aInt := bigOf(a)
	bi, bInt := bigOf(b)
	if aInt && bInt {
		if x, ok := intOf(a); ok {
			if y, ok := intOf(b); ok {
				return cmpInt(x, y), true
			}
		}
		return ai.Cmp(bi), true
	}
	af, aFloat := a.(float64)
	bf, bFloat := b.(float64)
	switch {
	case aFloat && bFloat:
		if math.IsNaN(af) || math.IsNaN(bf) {
			return 0, false
		}
		return cmpF(af, bf), true
	case aInt && bFloat:
		c, ok := cmpIntFloat(ai, bf)
		return c, ok
	case aFloat && bInt:
		c, ok := cmpIntFloat(bi, af)
		return -c, ok
	}
	return 0, false
}

// cmpIntFloat orders an int and a float by their exact values.
func cmpIntFloat(i *big.Int, f float64) (int, bool) {
	switch {
	case math.IsNaN(f):
		return 0, false
	case math.IsInf(f, 1):
		return -1, true
	case math.IsInf(f, -1):
		return 1, true
	}
	return new(big.Float).SetInt(i).Cmp(big.NewFloat(f)), true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// intFromFloat is Python's int(f) for a finite float: truncated toward
// zero, exact however large.
func intFromFloat(f float64) (value, error) {
	if math.Abs(f) < 1<<63 {
		return int64(f), nil
	}
	b, _ := big.NewFloat(math.Trunc(f)).Int(nil)
	return mkInt(b)
}

// intWork is the work units of an operator on a and b where either is a
// bigInt: their bytes, and for the product of their words, what a
// schoolbook multiplication or division of them does.
func intWork(a, b value) int {
	var n [2]int
	for i, v := range []value{a, b} {
		switch x := v.(type) {
		case bigInt:
			n[i] = len(x.v.Bits())
		case int64, bool:
			n[i] = 1
		}
	}
	if n[0] <= 1 && n[1] <= 1 {
		return 0
	}
	return 8*(n[0]+n[1]) + n[0]*n[1]/16
}
