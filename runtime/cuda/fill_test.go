package cuda

import (
	"slices"
	"strings"
	"testing"
)

// TestParseFill checks GPTQTOOL_QMMA_FILL's forms and refusals, and the
// row classes the counts apply to.
func TestParseFill(t *testing.T) {
	for _, c := range []struct {
		v    string
		want [4]int
	}{
		{"", defaultFill},
		{"3", [4]int{3, 3, 3, 3}},
		{"0", [4]int{0, 0, 0, 0}},
		{"1, 2,3,4", [4]int{1, 2, 3, 4}},
	} {
		got, err := parseFill(c.v)
		if err != nil || got != c.want {
			t.Errorf("parseFill(%q) = %v, %v; want %v", c.v, got, err, c.want)
		}
	}
	for _, v := range []string{"x", "-1", "1,2", "1,2,3,4,5", "65", "2,,2,2"} {
		if _, err := parseFill(v); err == nil || !strings.Contains(err.Error(), "GPTQTOOL_QMMA_FILL") {
			t.Errorf("parseFill(%q): err %v, want one naming GPTQTOOL_QMMA_FILL", v, err)
		}
	}
	for M, want := range map[int]int{1: 0, 4: 0, 5: 1, 8: 1, 9: 2, 16: 2, 17: 3, 32: 3, 64: 3} {
		if got := qfillClass(M); got != want {
			t.Errorf("qfillClass(%d) = %d, want %d", M, got, want)
		}
	}
}

// TestParseQST checks GPTQTOOL_QMMA_QST's forms (one depth for all qmma
// kernels, or the one-tile kernels' and the others'), its refusals, and
// the NVRTC defines of depths other than the default.
func TestParseQST(t *testing.T) {
	for _, c := range []struct {
		v    string
		want [2]int
		defs []string
	}{
		{"", [2]int{}, nil},
		{"8", [2]int{8, 8}, []string{"-DQST=8", "-DQST1=8"}},
		{"4", [2]int{4, 4}, []string{"-DQST=4", "-DQST1=4"}},
		{"4,8", [2]int{4, 8}, []string{"-DQST=8", "-DQST1=4"}},
		{"16, 4", [2]int{16, 4}, []string{"-DQST=4", "-DQST1=16"}},
		{"2,8", [2]int{2, 8}, []string{"-DQST=8", "-DQST1=2"}},
	} {
		got, err := parseQST(c.v)
		if err != nil || got != c.want {
			t.Errorf("parseQST(%q) = %v, %v; want %v", c.v, got, err, c.want)
		}
		if d := qstDefines(got); !slices.Equal(d, c.defs) {
			t.Errorf("qstDefines(%v) = %q, want %q", got, d, c.defs)
		}
	}
	for _, v := range []string{"x", "1", "6", "32", "4,8,8", "4,", "-4"} {
		if _, err := parseQST(v); err == nil || !strings.Contains(err.Error(), "GPTQTOOL_QMMA_QST") {
			t.Errorf("parseQST(%q): err %v, want one naming GPTQTOOL_QMMA_QST", v, err)
		}
	}
	// A setting applies to both bit widths.
	b := &Backend{qst: [2]int{4, 16}}
	for _, bits := range []int{4, 8} {
		if b.qstDepth(0, bits) != 4 || b.qstDepth(1, bits) != 16 || b.qstDepth(3, bits) != 16 || b.qmmaRing(0, bits) != 8*4*512 {
			t.Errorf("%d bits: depths %d %d %d, ring %d; want 4 16 16, %d", bits, b.qstDepth(0, bits), b.qstDepth(1, bits), b.qstDepth(3, bits), b.qmmaRing(0, bits), 8*4*512)
		}
	}
	// The defaults: one-tile kernels 4 chunks deep, the rest 4 at 4 bits
	// and 8 at 8.
	b = &Backend{}
	for _, c := range []struct{ tile, bits, want int }{{0, 4, 4}, {1, 4, 4}, {3, 4, 4}, {0, 8, 4}, {2, 8, 8}, {7, 8, 8}} {
		if d, r := b.qstDepth(c.tile, c.bits), b.qmmaRing(c.tile, c.bits); d != c.want || r != 8*c.want*512 {
			t.Errorf("defaults, tile %d, %d bits: depth %d ring %d, want %d %d", c.tile, c.bits, d, r, c.want, 8*c.want*512)
		}
	}
}

// TestEnvInt checks the integer settings' reading: the default where the
// variable is unset, the value within its bounds, and an error naming the
// variable, its value and what it wants for a value out of bounds or not a
// number.
func TestEnvInt(t *testing.T) {
	const name = "GPTQTOOL_TEST_ENVINT"
	t.Setenv(name, "")
	if n, err := envInt(name, 7, 1, 9, "1-9"); n != 7 || err != nil {
		t.Errorf("unset: %d, %v; want 7, nil", n, err)
	}
	for v, want := range map[string]int{"1": 1, "9": 9, "4": 4} {
		t.Setenv(name, v)
		if n, err := envInt(name, 7, 1, 9, "1-9"); n != want || err != nil {
			t.Errorf("%s: %d, %v; want %d, nil", v, n, err, want)
		}
	}
	for _, v := range []string{"0", "10", "x", "-1"} {
		t.Setenv(name, v)
		_, err := envInt(name, 7, 1, 9, "1-9 things")
		if err == nil || err.Error() != `cuda: GPTQTOOL_TEST_ENVINT="`+v+`": want 1-9 things` {
			t.Errorf("%s: error %v", v, err)
		}
	}
}

// TestParseQmmaWG checks GPTQTOOL_QMMA_WG: unset the default (two tiles,
// 9 rows), 0 none, 1 from two tiles, 2 from four, anything else refused by
// name.
func TestParseQmmaWG(t *testing.T) {
	for v, want := range map[string]int{"": 2, "0": 0, "1": 2, "2": 4} {
		if got, err := parseQmmaWG(v); got != want || err != nil {
			t.Errorf("parseQmmaWG(%q): from %d tiles, %v; want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"3", "4", "on", " 1"} {
		if _, err := parseQmmaWG(v); err == nil || !strings.Contains(err.Error(), "GPTQTOOL_QMMA_WG") {
			t.Errorf("parseQmmaWG(%q): err %v, want one naming GPTQTOOL_QMMA_WG", v, err)
		}
	}
}

// TestParseKernelDefines: GPTQTOOL_KERNEL_DEFINES becomes -D options, a
// pair after FILE.cu: an option of that file's modules alone; a pair that
// is not NAME=INTEGER, or a file that is not a .cu name, is refused with
// the pair named.
func TestParseKernelDefines(t *testing.T) {
	got, err := parseKernelDefines("  QU=2,PA_X9=-1 qglu.cu:QL_LEAD4=0")
	if err != nil || !slices.Equal(got, []string{"-DQU=2", "-DPA_X9=-1", "qglu.cu:-DQL_LEAD4=0"}) {
		t.Errorf("QU=2,PA_X9=-1 qglu.cu:QL_LEAD4=0: %q, %v", got, err)
	}
	if got, err := parseKernelDefines(""); got != nil || err != nil {
		t.Errorf("empty: %q, %v", got, err)
	}
	for _, bad := range []string{"QU", "QU=x", "9A=1", "qu=1", "Q-U=1", "=1", "QU=1 B", "qglu:QU=1", ".cu:QU=1", "a/b.cu:QU=1", "qglu.cu:qu=1", "qglu.cu:"} {
		_, err := parseKernelDefines(bad)
		if err == nil || !strings.Contains(err.Error(), "is not NAME=INTEGER") {
			t.Errorf("%q: error %v", bad, err)
		}
	}
	// A scoped pair reaches its file's modules alone.
	b := &Backend{extraDefines: got}
	if d := b.traceDefines("qglu.cu"); !slices.Equal(d, []string{"-DQU=2", "-DPA_X9=-1", "-DQL_LEAD4=0"}) {
		t.Errorf("qglu.cu's defines: %q", d)
	}
	if d := b.traceDefines("qgemv.cu"); !slices.Equal(d, []string{"-DQU=2", "-DPA_X9=-1"}) {
		t.Errorf("qgemv.cu's defines: %q", d)
	}
}

// TestParseSplits checks GPTQTOOL_QMMA_S's items and its errors, and that
// a product's plan takes the split given for its weight's shape (at most
// its chunks).
func TestParseSplits(t *testing.T) {
	m, err := parseSplits("4096x6144:8, 14336x4096:5")
	if err != nil || len(m) != 2 || m[[2]int{4096, 6144}] != 8 || m[[2]int{14336, 4096}] != 5 {
		t.Fatalf("two items: %v, %v", m, err)
	}
	if m, err := parseSplits(""); err != nil || m != nil {
		t.Errorf("empty: %v, %v", m, err)
	}
	for _, v := range []string{"4096x6144", "4096x6144:9", "4096x6144:0", "4096:8", "4096x6144:8x", "a,b", "4096x6144:8,"} {
		if _, err := parseSplits(v); err == nil {
			t.Errorf("%q: no error", v)
		}
	}
	b := &Backend{sms: 132, shared: 232448, smemSM: 233472, clusters: true, qfill: defaultFill, waveCap: true, qmmaS: m}
	if p := b.qmmaSplit(1, 4096, 6144, 4, false); p.S != 8 || p.cps != 8 {
		t.Errorf("q/k/v at 8: S %d cps %d", p.S, p.cps)
	}
	if p := b.qmmaSplit(1, 14336, 4096, 4, false); p.S != 5 || p.cps != 45 {
		t.Errorf("down at 5: S %d cps %d", p.S, p.cps)
	}
	// Another shape keeps its own plan (o_proj: 8 splits of 8 chunks).
	if p := b.qmmaSplit(1, 4096, 4096, 4, false); p.S != 8 || p.cps != 8 {
		t.Errorf("o_proj: S %d cps %d", p.S, p.cps)
	}
}

// TestPrefixList checks GPTQTOOL_PROBE_SKIP's reading: entries trimmed,
// empty ones (which would match every kernel) dropped.
func TestPrefixList(t *testing.T) {
	for _, c := range []struct {
		v    string
		want []string
	}{
		{"", nil},
		{",", nil},
		{"paged_attn_", []string{"paged_attn_"}},
		{" paged_attn_ ,, add_rmsnorm_,", []string{"paged_attn_", "add_rmsnorm_"}},
	} {
		if got := prefixList(c.v); !slices.Equal(got, c.want) {
			t.Errorf("prefixList(%q) = %q, want %q", c.v, got, c.want)
		}
	}
}
