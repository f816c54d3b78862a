package fused

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// Axis says how a fused tensor is made of its parts' tensors.
type Axis int

const (
	// Rows: the parts' rows one after another (weight [N, K], bias [N]);
	// a part is a slice of the fused tensor's bytes.
	Rows Axis = iota
	// Cols: the parts' columns side by side in each row (GPTQ's qweight
	// [K·bits/32, N] and scales [G, N]; qzeros [G, N·bits/32], whose
	// columns are int32 words of 32/bits zero points each).
	Cols
	// Shared: one tensor every part has, equal in each (GPTQ's g_idx
	// [K]: the parts share their input and so its order).
	Shared
)

// axisOf is the axis along which a fused module's tensor with the given
// suffix joins its parts', false for a suffix the layout does not know.
func axisOf(suffix string) (Axis, bool) {
	switch suffix {
	case "weight", "bias":
		return Rows, true
	case "qweight", "scales", "qzeros":
		return Cols, true
	case "g_idx":
		return Shared, true
	}
	return 0, false
}

// Suffixes are the tensors of a fused module that read as its parts'.
var Suffixes = []string{"weight", "bias", "qweight", "qzeros", "scales", "g_idx"}

// Tensor is one fused tensor as its parts' tensors: Name [Shape] of DType
// holds Parts[i] [PartShape(i)] along Axis, Widths[i] rows or columns
// each (nil for Shared).
type Tensor struct {
	Name   string
	DType  safetensors.DType
	Shape  []int
	Axis   Axis
	Parts  []string
	Widths []int
}

// PartInfo is part i's name, dtype and shape.
func (t Tensor) PartInfo(i int) safetensors.TensorInfo {
	shape := append([]int(nil), t.Shape...)
	switch t.Axis {
	case Rows:
		shape[0] = t.Widths[i]
	case Cols:
		shape[1] = t.Widths[i]
	}
	return safetensors.TensorInfo{Name: t.Parts[i], DType: t.DType, Shape: shape}
}

// rowBytes is the bytes of one row of t after its first dimension.
func (t Tensor) rowBytes() int {
	n := t.DType.Size()
	for _, d := range t.Shape[1:] {
		n *= d
	}
	return n
}

func (t Tensor) size() int { return t.Shape[0] * t.rowBytes() }

// offset is where part i starts along the axis.
func (t Tensor) offset(i int) int {
	o := 0
	for _, w := range t.Widths[:i] {
		o += w
	}
	return o
}

// Part returns part i's data from the fused tensor's: its rows (sharing
// data), its columns (a copy), or data itself (Shared).
func (t Tensor) Part(data []byte, i int) ([]byte, error) {
	if len(data) != t.size() {
		return nil, fmt.Errorf("fused: tensor %q: %d data bytes, want %d", t.Name, len(data), t.size())
	}
	switch t.Axis {
	case Rows:
		row := t.rowBytes()
		lo, hi := t.offset(i)*row, (t.offset(i)+t.Widths[i])*row
		return data[lo:hi:hi], nil
	case Cols:
		es, rows, cols := t.DType.Size(), t.Shape[0], t.Shape[1]
		c0, w := t.offset(i), t.Widths[i]
		out := make([]byte, 0, rows*w*es)
		for r := range rows {
			out = append(out, data[(r*cols+c0)*es:(r*cols+c0+w)*es]...)
		}
		return out, nil
	}
	return data, nil
}

// Join returns the fused tensor's data from its parts' (in Parts order).
// Shared parts must be equal: an error names the first that differs.
func (t Tensor) Join(parts [][]byte) ([]byte, error) {
	if len(parts) != len(t.Parts) {
		panic(fmt.Sprintf("fused: %d parts for %q, want %d", len(parts), t.Name, len(t.Parts)))
	}
	for i, p := range parts {
		want := t.size()
		switch t.Axis {
		case Rows:
			want = t.Widths[i] * t.rowBytes()
		case Cols:
			want = t.Shape[0] * t.Widths[i] * t.DType.Size()
		}
		if len(p) != want {
			return nil, fmt.Errorf("fused: tensor %q: %d data bytes, want %d", t.Parts[i], len(p), want)
		}
	}
	switch t.Axis {
	case Rows:
		return bytes.Join(parts, nil), nil
	case Cols:
		es, rows := t.DType.Size(), t.Shape[0]
		out := make([]byte, 0, t.size())
		for r := range rows {
			for i, p := range parts {
				w := t.Widths[i] * es
				out = append(out, p[r*w:(r+1)*w]...)
			}
		}
		return out, nil
	}
	for i, p := range parts[1:] {
		if !bytes.Equal(p, parts[0]) {
			return nil, fmt.Errorf("fused: tensor %q differs from %q: the parts of %s must share it", t.Parts[i+1], t.Parts[0], t.Name)
		}
	}
	return parts[0], nil
}

// layout returns the fused tensor fused [shape] of module m in the layer
// with prefix p (suffix its kind), ok false for a suffix that does not
// join. The error says why the shape does not split into m's parts.
func layout(p string, m Module, suffix string, dt safetensors.DType, shape []int) (Tensor, bool, error) {
	axis, ok := axisOf(suffix)
	if !ok {
		return Tensor{}, false, nil
	}
	t := Tensor{Name: p + m.Name + "." + suffix, DType: dt, Shape: shape, Axis: axis}
	for _, part := range m.Parts {
		t.Parts = append(t.Parts, p+part.Module+"."+suffix)
	}
	N := m.Rows()
	switch {
	case axis == Rows:
		if len(shape) < 1 || shape[0] != N || (suffix == "weight" && len(shape) != 2) || (suffix == "bias" && len(shape) != 1) {
			want := fmt.Sprintf("[%d K]", N)
			if suffix == "bias" {
				want = fmt.Sprintf("[%d]", N)
			}
			return Tensor{}, true, fmt.Errorf("shape %v, want %s (%s)", shape, want, describe(m))
		}
		for _, part := range m.Parts {
			t.Widths = append(t.Widths, part.N)
		}
	case axis == Shared:
		if len(shape) != 1 {
			return Tensor{}, true, fmt.Errorf("shape %v, want [K]", shape)
		}
	case suffix == "qzeros":
		// [G, N·bits/32]: the parts' zero points must start on a word.
		if len(shape) != 2 || shape[1] == 0 || 32*shape[1]%N != 0 {
			return Tensor{}, true, fmt.Errorf("shape %v, want [G N·bits/32] with N %d (%s)", shape, N, describe(m))
		}
		bits := 32 * shape[1] / N
		for _, part := range m.Parts {
			if part.N*bits%32 != 0 {
				g := gcd(bits, 32)
				return Tensor{}, true, fmt.Errorf("shape %v: %d-bit zero points are packed along N, %d columns to %d int32, and %s's %d columns do not fill whole words: its columns cannot be sliced", shape, bits, 32/g, bits/g, part.Module, part.N)
			}
			t.Widths = append(t.Widths, part.N*bits/32)
		}
	default:
		if len(shape) != 2 || shape[1] != N {
			return Tensor{}, true, fmt.Errorf("shape %v, want [… %d] (%s)", shape, N, describe(m))
		}
		for _, part := range m.Parts {
			t.Widths = append(t.Widths, part.N)
		}
	}
	return t, true, nil
}

// Join plans a checkpoint's tensors infos, listed with the parts of the
// fused modules mods of its layers decoder layers, as the checkpoint with
// the fused tensors: each fused tensor in place of its parts, where its
// first part is listed. A part listed without all its siblings, or parts
// that do not join (dtypes or shapes), is an error naming them.
func Join(infos []safetensors.TensorInfo, layers int, mods []Module) (*Joiner, error) {
	j := &Joiner{fused: map[string]Tensor{}, partOf: map[string]string{}, data: map[string][]byte{}}
	byName := map[string]safetensors.TensorInfo{}
	for _, ti := range infos {
		byName[ti.Name] = ti
	}
	for i := range layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		for _, m := range mods {
			for _, suffix := range Suffixes {
				var have []string
				for _, part := range m.Parts {
					if _, ok := byName[p+part.Module+"."+suffix]; ok {
						have = append(have, part.Module)
					}
				}
				if len(have) == 0 {
					continue
				}
				if len(have) != len(m.Parts) {
					return nil, fmt.Errorf("fused: %s%s.%s: %s has only %s of its parts (%s)", p, m.Name, suffix, p+m.Name, strings.Join(have, ", "), describe(m))
				}
				first := byName[p+m.Parts[0].Module+"."+suffix]
				shape := append([]int(nil), first.Shape...)
				axis, _ := axisOf(suffix)
				for _, part := range m.Parts[1:] {
					ti := byName[p+part.Module+"."+suffix]
					same := ti.DType == first.DType && len(ti.Shape) == len(first.Shape)
					for d := range ti.Shape {
						switch {
						case !same:
						case axis == Rows && d == 0, axis == Cols && d == 1:
							shape[d] += ti.Shape[d]
						default:
							same = ti.Shape[d] == first.Shape[d]
						}
					}
					if !same {
						return nil, fmt.Errorf("fused: tensor %q %s %v does not join %q %s %v into %s%s.%s", ti.Name, ti.DType, ti.Shape, first.Name, first.DType, first.Shape, p, m.Name, suffix)
					}
				}
				t, _, err := layout(p, m, suffix, first.DType, shape)
				if err != nil {
					return nil, fmt.Errorf("fused: tensor %q: %w", p+m.Name+"."+suffix, err)
				}
				for k := range t.Parts {
					if got := byName[t.Parts[k]]; !slicesEqual(got.Shape, t.PartInfo(k).Shape) {
						return nil, fmt.Errorf("fused: tensor %q: shape %v, want %v as part of %q", got.Name, got.Shape, t.PartInfo(k).Shape, t.Name)
					}
					j.partOf[t.Parts[k]] = t.Name
				}
				j.fused[t.Name] = t
			}
		}
	}
	for _, ti := range infos {
		f, ok := j.partOf[ti.Name]
		switch {
		case !ok:
			j.infos = append(j.infos, ti)
		case j.fused[f].Parts[0] == ti.Name:
			t := j.fused[f]
			j.infos = append(j.infos, safetensors.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape})
		}
	}
	return j, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Joiner turns the tensors of a checkpoint with its fused modules' parts
// into the checkpoint's tensors (Join): Add takes each tensor's data in
// any order and returns those of the fused list that are complete, in its
// order, for a writer that takes tensors in declaration order.
type Joiner struct {
	infos  []safetensors.TensorInfo
	fused  map[string]Tensor
	partOf map[string]string
	data   map[string][]byte // added, not yet returned
	next   int               // infos[next] is the next to return
}

// Resume makes a Joiner for a writer that has the first next tensors of
// Infos already: Add returns the tensors from the next-th on.
func (j *Joiner) Resume(next int) { j.next = next }

// Infos lists the checkpoint's tensors: the fused ones in place of their
// parts.
func (j *Joiner) Infos() []safetensors.TensorInfo {
	return append([]safetensors.TensorInfo(nil), j.infos...)
}

// Fused returns the fused tensor called name, ok false for another.
func (j *Joiner) Fused(name string) (Tensor, bool) {
	t, ok := j.fused[name]
	return t, ok
}

// PartOf returns the fused tensor holding part name, "" for another.
func (j *Joiner) PartOf(name string) string { return j.partOf[name] }

// Named is a tensor's name and data.
type Named struct {
	Name string
	Data []byte
}

// Add takes tensor name's data (a part's or another tensor's) and returns
// the tensors now complete, from the next in the list on, in its order.
func (j *Joiner) Add(name string, data []byte) ([]Named, error) {
	j.data[name] = data
	var out []Named
	for j.next < len(j.infos) {
		n := j.infos[j.next].Name
		t, isFused := j.fused[n]
		if !isFused {
			d, ok := j.data[n]
			if !ok {
				break
			}
			delete(j.data, n)
			out = append(out, Named{n, d})
			j.next++
			continue
		}
		parts := make([][]byte, len(t.Parts))
		complete := true
		for i, p := range t.Parts {
			if parts[i], complete = j.data[p]; !complete {
				break
			}
		}
		if !complete {
			break
		}
		d, err := t.Join(parts)
		if err != nil {
			return out, err
		}
		for _, p := range t.Parts {
			delete(j.data, p)
		}
		out = append(out, Named{n, d})
		j.next++
	}
	return out, nil
}
