package pytorch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// ErrForbiddenGlobal reports a pickle that names a Python global outside the
// few a state dict needs (see the package documentation). Errors wrapping it
// name the global as module.name and the file.
var ErrForbiddenGlobal = errors.New("forbidden pickle global")

// The values the pickle machine builds. None is nil, bool is bool, int is
// int64, float is float64, str is string and bytes is []byte.
type (
	// pyTuple is an immutable tuple.
	pyTuple []any
	// pyList is a list; a pointer so that memo references share it.
	pyList struct{ items []any }
	// pyDict is a dict or an OrderedDict, in insertion order. Keys may
	// repeat in a hostile pickle; readers decide what that means.
	pyDict struct{ keys, vals []any }
	// pyGlobal is an allowed global, loaded but never called by Python:
	// REDUCE interprets the few callables itself.
	pyGlobal struct{ module, name string }
	// storageRef is the result of a persistent id
	// ('storage', storage_type, key, location, numel).
	storageRef struct {
		typeName string // "FloatStorage", from the global torch.FloatStorage
		key      string // the archive entry <archive>/data/<key>
		location string // "cpu", "cuda:0": ignored, data are always read to host
		numel    int64  // elements of storage_type the storage claims
	}
	// tensorRef is the result of torch._utils._rebuild_tensor_v2 and
	// friends: a view of a storage.
	tensorRef struct {
		storage *storageRef
		offset  int64   // in elements of the storage type; may be < 0 until validated
		shape   []int64 // PyTorch dim order; may be < 0 until validated
		stride  []int64 // in elements, one per dim; may be < 0 until validated
	}
)

func (g pyGlobal) String() string { return g.module + "." + g.name }

// Pickle opcodes (CPython Lib/pickle.py). Only those a state dict written by
// torch.save (protocol 2, or 4 with pickle_protocol=4) uses, and a few
// harmless stack opcodes, are accepted.
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opBinInt2        = 'M'
	opNone           = 'N'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opBinUnicode     = 'X'
	opEmptyList      = ']'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opList           = 'l'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opProto          = 0x80
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opShortBinUnicod = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
)

// allowedCallables are the globals REDUCE interprets. Storage types
// (torch.FloatStorage …) are allowed separately by isStorageType.
var allowedCallables = map[string]bool{
	"collections.OrderedDict":                    true,
	"torch._utils._rebuild_tensor":               true,
	"torch._utils._rebuild_tensor_v2":            true,
	"torch._utils._rebuild_parameter":            true,
	"torch._utils._rebuild_parameter_with_state": true,
}

// isStorageType reports whether module.name looks like a torch storage type,
// torch.<Identifier>Storage. Whether its dtype is known is decided per tensor.
func isStorageType(module, name string) bool {
	if module != "torch" || !strings.HasSuffix(name, "Storage") || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// maxDims bounds the rank of a tensor; torch itself allows 64 dims.
const maxDims = 64

// unpickler is a pickle machine that builds values and never executes
// anything: globals are names checked against an allow list, and REDUCE,
// BUILD and BINPERSID are interpreted for the few callables a state dict
// uses.
type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int // stack heights at MARK
	memo  map[uint32]any
}

// unpickle runs the pickle in data to its STOP and returns the value left on
// the stack. Errors give the byte offset and the opcode; the caller adds the
// file and entry names.
func unpickle(data []byte) (any, error) {
	u := &unpickler{data: data, memo: map[uint32]any{}}
	for {
		if u.pos >= len(u.data) {
			return nil, fmt.Errorf("offset %d: pickle ends without STOP", u.pos)
		}
		at, op := u.pos, u.data[u.pos]
		u.pos++
		if op == opStop {
			if len(u.stack) != 1 || len(u.marks) != 0 {
				return nil, fmt.Errorf("offset %d: STOP with %d values and %d marks on the stack, want 1 and 0", at, len(u.stack), len(u.marks))
			}
			return u.stack[0], nil
		}
		if err := u.step(op); err != nil {
			return nil, fmt.Errorf("offset %d: opcode %s: %w", at, opName(op), err)
		}
	}
}

func opName(op byte) string {
	if op >= 0x21 && op < 0x7f {
		return fmt.Sprintf("%q (0x%02x)", rune(op), op)
	}
	return fmt.Sprintf("0x%02x", op)
}

var errShort = errors.New("pickle truncated")

func (u *unpickler) read(n uint64) ([]byte, error) {
	if n > uint64(len(u.data)-u.pos) {
		return nil, fmt.Errorf("%w: %d bytes wanted, %d left", errShort, n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+int(n)]
	u.pos += int(n)
	return b, nil
}

func (u *unpickler) readUint(n int) (uint64, error) {
	b, err := u.read(uint64(n))
	if err != nil {
		return 0, err
	}
	var buf [8]byte
	copy(buf[:], b)
	return binary.LittleEndian.Uint64(buf[:]), nil
}

func (u *unpickler) readLine() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return "", fmt.Errorf("%w: no newline", errShort)
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	base := 0
	if len(u.marks) > 0 {
		base = u.marks[len(u.marks)-1]
	}
	if len(u.stack) <= base {
		return nil, errors.New("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	base := 0
	if len(u.marks) > 0 {
		base = u.marks[len(u.marks)-1]
	}
	if len(u.stack) <= base {
		return nil, errors.New("stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark removes and returns the values pushed since the last MARK.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, errors.New("no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) popN(n int) ([]any, error) {
	base := 0
	if len(u.marks) > 0 {
		base = u.marks[len(u.marks)-1]
	}
	if len(u.stack)-base < n {
		return nil, errors.New("stack underflow")
	}
	items := append([]any(nil), u.stack[len(u.stack)-n:]...)
	u.stack = u.stack[:len(u.stack)-n]
	return items, nil
}

func (u *unpickler) step(op byte) error {
	switch op {
	case opProto:
		v, err := u.readUint(1)
		if err != nil {
			return err
		}
		if v < 2 || v > 5 {
			return fmt.Errorf("protocol %d, want 2 to 5", v)
		}
	case opFrame:
		// Frames only group opcodes for buffered reading; the whole
		// pickle is in memory, so the length is checked and skipped.
		n, err := u.readUint(8)
		if err != nil {
			return err
		}
		if n > uint64(len(u.data)-u.pos) {
			return fmt.Errorf("%w: frame of %d bytes, %d left", errShort, n, len(u.data)-u.pos)
		}
	case opMark:
		u.marks = append(u.marks, len(u.stack))
	case opPop:
		_, err := u.pop()
		return err
	case opPopMark:
		_, err := u.popMark()
		return err
	case opDup:
		v, err := u.top()
		if err != nil {
			return err
		}
		u.push(v)
	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opBinInt:
		v, err := u.readUint(4)
		if err != nil {
			return err
		}
		u.push(int64(int32(uint32(v))))
	case opBinInt1:
		v, err := u.readUint(1)
		if err != nil {
			return err
		}
		u.push(int64(v))
	case opBinInt2:
		v, err := u.readUint(2)
		if err != nil {
			return err
		}
		u.push(int64(v))
	case opLong1, opLong4:
		width := 1
		if op == opLong4 {
			width = 4
		}
		n, err := u.readUint(width)
		if err != nil {
			return err
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		v, err := decodeLong(b)
		if err != nil {
			return err
		}
		u.push(v)
	case opBinFloat:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opShortBinUnicod, opBinUnicode, opBinUnicode8:
		width := map[byte]int{opShortBinUnicod: 1, opBinUnicode: 4, opBinUnicode8: 8}[op]
		n, err := u.readUint(width)
		if err != nil {
			return err
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		if !utf8.Valid(b) {
			return errors.New("string is not valid UTF-8")
		}
		u.push(string(b))
	case opShortBinBytes, opBinBytes, opBinBytes8:
		width := map[byte]int{opShortBinBytes: 1, opBinBytes: 4, opBinBytes8: 8}[op]
		n, err := u.readUint(width)
		if err != nil {
			return err
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		u.push(append([]byte(nil), b...))
	case opEmptyTuple:
		u.push(pyTuple{})
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opTuple1, opTuple2, opTuple3:
		items, err := u.popN(int(op-opTuple1) + 1)
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opEmptyList:
		u.push(&pyList{})
	case opList:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(&pyList{items: items})
	case opAppend, opAppends:
		var items []any
		if op == opAppend {
			v, err := u.pop()
			if err != nil {
				return err
			}
			items = []any{v}
		} else {
			var err error
			if items, err = u.popMark(); err != nil {
				return err
			}
		}
		l, err := u.top()
		if err != nil {
			return err
		}
		list, ok := l.(*pyList)
		if !ok {
			return fmt.Errorf("append to %s, want a list", typeName(l))
		}
		list.items = append(list.items, items...)
	case opEmptyDict:
		u.push(&pyDict{})
	case opDict:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := &pyDict{}
		if err := d.setItems(items); err != nil {
			return err
		}
		u.push(d)
	case opSetItem, opSetItems:
		var items []any
		var err error
		if op == opSetItem {
			items, err = u.popN(2)
		} else {
			items, err = u.popMark()
		}
		if err != nil {
			return err
		}
		v, err := u.top()
		if err != nil {
			return err
		}
		d, ok := v.(*pyDict)
		if !ok {
			return fmt.Errorf("set items of %s, want a dict", typeName(v))
		}
		return d.setItems(items)
	case opBinPut, opLongBinPut:
		width := 1
		if op == opLongBinPut {
			width = 4
		}
		i, err := u.readUint(width)
		if err != nil {
			return err
		}
		v, err := u.top()
		if err != nil {
			return err
		}
		u.memo[uint32(i)] = v
	case opMemoize:
		v, err := u.top()
		if err != nil {
			return err
		}
		u.memo[uint32(len(u.memo))] = v
	case opBinGet, opLongBinGet:
		width := 1
		if op == opLongBinGet {
			width = 4
		}
		i, err := u.readUint(width)
		if err != nil {
			return err
		}
		v, ok := u.memo[uint32(i)]
		if !ok {
			return fmt.Errorf("memo key %d not set", i)
		}
		u.push(v)
	case opGlobal:
		module, err := u.readLine()
		if err != nil {
			return err
		}
		name, err := u.readLine()
		if err != nil {
			return err
		}
		g, err := global(module, name)
		if err != nil {
			return err
		}
		u.push(g)
	case opStackGlobal:
		items, err := u.popN(2)
		if err != nil {
			return err
		}
		module, ok1 := items[0].(string)
		name, ok2 := items[1].(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("module and name are %s and %s, want strings", typeName(items[0]), typeName(items[1]))
		}
		g, err := global(module, name)
		if err != nil {
			return err
		}
		u.push(g)
	case opBinPersID:
		pid, err := u.pop()
		if err != nil {
			return err
		}
		s, err := persistentLoad(pid)
		if err != nil {
			return err
		}
		u.push(s)
	case opReduce:
		items, err := u.popN(2)
		if err != nil {
			return err
		}
		args, ok := items[1].(pyTuple)
		if !ok {
			return fmt.Errorf("arguments are %s, want a tuple", typeName(items[1]))
		}
		v, err := reduce(items[0], args)
		if err != nil {
			return err
		}
		u.push(v)
	case opBuild:
		state, err := u.pop()
		if err != nil {
			return err
		}
		obj, err := u.top()
		if err != nil {
			return err
		}
		return build(obj, state)
	default:
		return errors.New("not a state dict opcode")
	}
	return nil
}

// global checks module.name against the allow list. Nothing is imported or
// looked up: an allowed global is only a name that REDUCE or BINPERSID
// understands.
func global(module, name string) (pyGlobal, error) {
	g := pyGlobal{module, name}
	if allowedCallables[g.String()] || isStorageType(module, name) {
		return g, nil
	}
	return pyGlobal{}, fmt.Errorf("global %s: %w", printable(g.String()), ErrForbiddenGlobal)
}

// clip bounds the length of a name quoted in an error message.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// printable quotes s when it holds characters that would garble an error
// message, and bounds its length.
func printable(s string) string {
	s = clip(s)
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

// decodeLong decodes a little-endian two's complement integer (LONG1,
// LONG4). Values outside int64 are refused: no state dict needs them.
func decodeLong(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	neg := b[len(b)-1]&0x80 != 0
	// Bytes above the eighth must be pure sign extension.
	for i := 8; i < len(b); i++ {
		if (neg && b[i] != 0xff) || (!neg && b[i] != 0) {
			return 0, fmt.Errorf("integer of %d bytes overflows int64", len(b))
		}
	}
	var buf [8]byte
	if neg {
		buf = [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	copy(buf[:], b)
	v := int64(binary.LittleEndian.Uint64(buf[:]))
	if len(b) > 8 && (v < 0) != neg {
		return 0, fmt.Errorf("integer of %d bytes overflows int64", len(b))
	}
	return v, nil
}

func (d *pyDict) setItems(items []any) error {
	if len(items)%2 != 0 {
		return fmt.Errorf("%d values for dict items, want key, value pairs", len(items))
	}
	for i := 0; i < len(items); i += 2 {
		d.keys = append(d.keys, items[i])
		d.vals = append(d.vals, items[i+1])
	}
	return nil
}

// persistentLoad maps a persistent id of torch's zip format,
// ('storage', storage_type, key, location, numel), to a storage reference
// (torch/serialization.py, _load.persistent_load). No data is read here.
func persistentLoad(pid any) (*storageRef, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 {
		return nil, fmt.Errorf("persistent id is %s, want a 5-tuple ('storage', type, key, location, numel)", describe(pid))
	}
	if kind, _ := t[0].(string); kind != "storage" {
		return nil, fmt.Errorf("persistent id of kind %s, want 'storage'", describe(t[0]))
	}
	g, ok := t[1].(pyGlobal)
	if !ok || !isStorageType(g.module, g.name) {
		return nil, fmt.Errorf("persistent id storage type is %s, want a torch storage type", describe(t[1]))
	}
	key, ok := t[2].(string)
	if !ok {
		return nil, fmt.Errorf("persistent id key is %s, want a string", typeName(t[2]))
	}
	loc, ok := t[3].(string)
	if !ok {
		return nil, fmt.Errorf("persistent id location is %s, want a string", typeName(t[3]))
	}
	numel, ok := t[4].(int64)
	if !ok || numel < 0 {
		return nil, fmt.Errorf("persistent id numel is %s, want an integer >= 0", describe(t[4]))
	}
	return &storageRef{typeName: g.name, key: key, location: loc, numel: numel}, nil
}

// reduce interprets REDUCE for the allowed callables, mirroring
// torch/_utils.py (_rebuild_tensor_v2, _rebuild_parameter) and
// collections.OrderedDict. It returns values; it calls nothing.
func reduce(callable any, args pyTuple) (any, error) {
	g, ok := callable.(pyGlobal)
	if !ok {
		return nil, fmt.Errorf("call of %s, want an allowed global", typeName(callable))
	}
	switch g.String() {
	case "collections.OrderedDict":
		if len(args) != 0 {
			return nil, fmt.Errorf("%s with %d arguments, want 0", g, len(args))
		}
		return &pyDict{}, nil
	case "torch._utils._rebuild_tensor":
		if len(args) != 4 {
			return nil, fmt.Errorf("%s with %d arguments, want 4", g, len(args))
		}
		return rebuildTensor(g, args)
	case "torch._utils._rebuild_tensor_v2":
		// (storage, storage_offset, size, stride, requires_grad,
		// backward_hooks[, metadata]); the last three do not change
		// the data.
		if len(args) != 6 && len(args) != 7 {
			return nil, fmt.Errorf("%s with %d arguments, want 6 or 7", g, len(args))
		}
		return rebuildTensor(g, args)
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		// (data, requires_grad, backward_hooks[, state]): the
		// Parameter's data is the tensor.
		want := 3
		if g.name == "_rebuild_parameter_with_state" {
			want = 4
		}
		if len(args) != want {
			return nil, fmt.Errorf("%s with %d arguments, want %d", g, len(args), want)
		}
		t, ok := args[0].(*tensorRef)
		if !ok {
			return nil, fmt.Errorf("%s of %s, want a tensor", g, typeName(args[0]))
		}
		return t, nil
	}
	return nil, fmt.Errorf("global %s is not callable", g)
}

func rebuildTensor(g pyGlobal, args pyTuple) (*tensorRef, error) {
	s, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("%s: storage is %s, want a persistent storage", g, typeName(args[0]))
	}
	offset, ok := args[1].(int64)
	if !ok {
		return nil, fmt.Errorf("%s: storage offset is %s, want an integer", g, describe(args[1]))
	}
	shape, err := intTuple(args[2])
	if err != nil {
		return nil, fmt.Errorf("%s: size: %w", g, err)
	}
	stride, err := intTuple(args[3])
	if err != nil {
		return nil, fmt.Errorf("%s: stride: %w", g, err)
	}
	if len(stride) != len(shape) {
		return nil, fmt.Errorf("%s: %d strides for %d dims", g, len(stride), len(shape))
	}
	return &tensorRef{storage: s, offset: offset, shape: shape, stride: stride}, nil
}

// intTuple converts a tuple of integers. Their signs are checked with the
// tensor's name, once the state dict is built.
func intTuple(v any) ([]int64, error) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, fmt.Errorf("%s, want a tuple of integers", typeName(v))
	}
	if len(t) > maxDims {
		return nil, fmt.Errorf("%d dims, want at most %d", len(t), maxDims)
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("element %d is %s, want an integer", i, describe(x))
		}
		out[i] = n
	}
	return out, nil
}

// build interprets BUILD. An OrderedDict's state is its instance
// attributes: torch state dicts carry _metadata (module versions), which
// tensors do not need. A tensor's state (a Parameter's extra attributes,
// torch >= 2.0) is likewise dropped. Other objects cannot be built.
func build(obj, state any) error {
	switch obj.(type) {
	case *pyDict, *tensorRef:
		return nil
	}
	return fmt.Errorf("BUILD of %s, want an OrderedDict or a tensor", typeName(obj))
}

// typeName names the Python type of a machine value for error messages.
func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case pyGlobal:
		return "global " + v.String()
	case *storageRef:
		return "storage"
	case *tensorRef:
		return "tensor"
	}
	return fmt.Sprintf("%T", v)
}

// describe is typeName with the value for scalars.
func describe(v any) string {
	switch x := v.(type) {
	case int64:
		return fmt.Sprintf("int %d", x)
	case string:
		return fmt.Sprintf("str %q", clip(x))
	case bool:
		return fmt.Sprintf("bool %v", x)
	}
	return typeName(v)
}
