package kernels

import (
	"strconv"
	"strings"
)

// A Module is what the backend compiles as one CUDA module: a source file,
// whole, or the part of it that a few preprocessor defines select. NVRTC
// compiles a program on one thread, and qgemv.cu (72 kernels) and decode.cu
// (51) took most of a first run's compile; a model runs one bit width and
// one activation dtype of them, so those two files are compiled in parts:
//
//   - qgemv.cu: QG_BITS=4|8 with KDT (0 f32, 1 f16, 2 bf16) and QG_NRM=0
//     (the product kernels of one bit width and dtype and its qdequant) or
//     QG_NRM=1 (its products that normalize x), or QG_WG=1 and QG_WG=2 (its
//     warpgroup-MMA products, _w, of two to four and of five to eight
//     tiles: sm_90a only, so ArchSpecific); QG_BITS=0
//     glu_rows and gather_cols of every dtype;
//
//   - decode.cu: PA_C, PA_G and KDT, one paged_attn kernel (with PA_PRE=1
//     its _pre kernel, with PA_TC=1 its _tc kernel, with both its _tcpre
//     kernel); PA_C=0 the rope_store
//     kernels of every dtype.
//
//   - qglu.cu: QL_BITS=4|8 with KDT and the block's shape (QL_W warps,
//     QL_D chunks in flight a warp), one kernel (with QG_SZ16=1 for a
//     name with ScalesOnly, as qgemv.cu's).
//
// head.cu compiles whole, for sm_90a only (ArchSpecific).
//
//   - stream.cu: STREAM_WG=1 for the stream_wg probes (warpgroup MMA,
//     ArchSpecific); its other kernels compile whole.
//
// A qgemv.cu product or qdequant name with the suffix ScalesOnly is the
// same kernel compiled with QG_SZ16=1 as well, for weights that carry their
// scales alone (the symmetric quantizer's zeros); Symbol is its name in the
// CUBIN.
//
// KDT narrows FOR_DTYPES (common.cuh) to one dtype. Without defines a file
// compiles whole, every kernel in it.
type Module struct {
	File    string
	Defines []string // NAME=VALUE, passed to NVRTC as -D options
	// ArchSpecific modules use features of one architecture only (sm_90a's
	// wgmma): they compile for sm_<arch>a, and only on that architecture.
	ArchSpecific bool
}

// Key names the module uniquely: the file, then its defines.
func (m Module) Key() string {
	if len(m.Defines) == 0 {
		return m.File
	}
	return m.File + "[" + strings.Join(m.Defines, ",") + "]"
}

// Arch is the NVRTC target of the module on a device of compute
// capability arch (90 for 9.0): "90", or "90a" for an ArchSpecific module.
func (m Module) Arch(arch int) string {
	if m.ArchSpecific {
		return strconv.Itoa(arch) + "a"
	}
	return strconv.Itoa(arch)
}

// Options are the NVRTC options that select the module's part of its file.
func (m Module) Options() []string {
	out := make([]string, len(m.Defines))
	for i, d := range m.Defines {
		out[i] = "-D" + d
	}
	return out
}

// dtypeIndex is KDT's value for a kernel name's dtype suffix.
func dtypeIndex(suffix string) (int, bool) {
	switch suffix {
	case "f32":
		return 0, true
	case "f16":
		return 1, true
	case "bf16":
		return 2, true
	}
	return 0, false
}

// ScalesOnly is the suffix of a qgemv.cu kernel name that selects its
// QG_SZ16 build: the weight's sz holds fp16 scales alone, its zeros all
// 2^(bits-1).
const ScalesOnly = "+sz16"

// Symbol is kernel name's symbol in its module: name without ScalesOnly.
func Symbol(name string) string {
	return strings.TrimSuffix(name, ScalesOnly)
}

// WarpgroupPart is the qgemv.cu part (its QG_WG define) that holds the
// warpgroup-MMA kernels of tiles tiles of 8 rows: 1 for two to four tiles,
// 2 for five to eight (qgemv.cu's parts draw the same line).
func WarpgroupPart(tiles int) int {
	if tiles >= 5 {
		return 2
	}
	return 1
}

// ModuleOf is the module of file that holds kernel name; a name outside the
// parts' naming compiles with the whole file.
func ModuleOf(file, name string) Module {
	if file == "qglu.cu" {
		// qglu<bits>_w<warps>d<depth>[_n]_<dtype>[+sz16]: one bit
		// width, block shape and dtype a part (the kernel and its _n,
		// normalizing x).
		sym := Symbol(name)
		f := strings.Split(sym, "_")
		if len(f) == 4 && f[2] == "n" {
			f = []string{f[0], f[1], f[3]}
		}
		if len(f) != 3 || (f[0] != "qglu4" && f[0] != "qglu8") {
			return Module{File: file}
		}
		dt, ok := dtypeIndex(f[2])
		w, d, shaped := strings.Cut(strings.TrimPrefix(f[1], "w"), "d")
		wn, err1 := strconv.Atoi(w)
		dn, err2 := strconv.Atoi(d)
		if !ok || !shaped || !strings.HasPrefix(f[1], "w") || err1 != nil || err2 != nil || wn <= 0 || dn <= 0 {
			return Module{File: file}
		}
		m := Module{File: file, Defines: []string{"QL_BITS=" + f[0][4:], "KDT=" + strconv.Itoa(dt), "QL_W=" + strconv.Itoa(wn), "QL_D=" + strconv.Itoa(dn)}}
		if sym != name {
			m.Defines = append(m.Defines, "QG_SZ16=1")
		}
		return m
	}
	if file == "qgemv.cu" && strings.HasSuffix(name, ScalesOnly) {
		m := ModuleOf(file, Symbol(name))
		if len(m.Defines) > 0 && m.Defines[0] != "QG_BITS=0" {
			m.Defines = append(m.Defines, "QG_SZ16=1")
		}
		return m
	}
	whole := Module{File: file}
	dt, ok := dtypeIndex(name[strings.LastIndexByte(name, '_')+1:])
	switch file {
	case "qgemv.cu":
		if strings.HasPrefix(name, "glu_rows_") || strings.HasPrefix(name, "gather_cols_") {
			return Module{File: file, Defines: []string{"QG_BITS=0"}}
		}
		var bits string
		nrm, wg := "0", "0"
		switch {
		case strings.HasPrefix(name, "qmma") && len(name) > 4:
			bits = name[4:5]
			if strings.Contains(name, "_n_") {
				nrm = "1"
			}
			if strings.Contains(name, "_w_") {
				// qmma<bits>_t<tiles>_w...: the part of its tiles.
				wg = "1"
				if len(name) > 7 && name[5:7] == "_t" && name[7] >= '1' && name[7] <= '8' {
					wg = strconv.Itoa(WarpgroupPart(int(name[7] - '0')))
				}
			}
		case strings.HasPrefix(name, "qdequant") && len(name) > 8:
			bits = name[8:9]
		}
		if !ok || (bits != "4" && bits != "8") {
			return whole
		}
		if wg != "0" {
			return Module{File: file, Defines: []string{"QG_BITS=" + bits, "KDT=" + strconv.Itoa(dt), "QG_WG=" + wg}, ArchSpecific: true}
		}
		return Module{File: file, Defines: []string{"QG_BITS=" + bits, "KDT=" + strconv.Itoa(dt), "QG_NRM=" + nrm}}
	case "stream.cu":
		// stream_wg<V>: the probes on warpgroup MMA, sm_90a only.
		if strings.HasPrefix(name, "stream_wg") {
			return Module{File: file, Defines: []string{"STREAM_WG=1"}, ArchSpecific: true}
		}
		return whole
	case "head.cu":
		// Warpgroup MMA throughout.
		return Module{File: file, ArchSpecific: true}
	case "decode.cu":
		if strings.HasPrefix(name, "rope_store_") {
			return Module{File: file, Defines: []string{"PA_C=0"}}
		}
		// paged_attn_c<C>_g<G>[_pre|_tc]_<dtype>
		var c, g int
		if !ok || !strings.HasPrefix(name, "paged_attn_c") {
			return whole
		}
		parts := strings.Split(strings.TrimPrefix(name, "paged_attn_c"), "_")
		kind := ""
		if len(parts) == 4 && (parts[2] == "pre" || parts[2] == "tc" || parts[2] == "tcpre") {
			kind = parts[2]
			parts = append(parts[:2], parts[3])
		}
		if len(parts) != 3 || !strings.HasPrefix(parts[1], "g") {
			return whole
		}
		var err1, err2 error
		c, err1 = strconv.Atoi(parts[0])
		g, err2 = strconv.Atoi(parts[1][1:])
		if err1 != nil || err2 != nil || c <= 0 || g <= 0 {
			return whole
		}
		defs := []string{"PA_C=" + strconv.Itoa(c), "PA_G=" + strconv.Itoa(g), "KDT=" + strconv.Itoa(dt)}
		switch kind {
		case "pre":
			defs = append(defs, "PA_PRE=1")
		case "tc":
			defs = append(defs, "PA_TC=1")
		case "tcpre":
			defs = append(defs, "PA_PRE=1", "PA_TC=1")
		}
		return Module{File: file, Defines: defs}
	}
	return whole
}
