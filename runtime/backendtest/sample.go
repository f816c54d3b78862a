package backendtest

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
)

// testTokenSampler checks a runtime.TokenSampler against runtime.DrawToken
// on the same logits: greedy with ties, temperatures, top-k that keeps
// classes of equal logits and top-p that cuts inside them, logit biases
// and penalties, masks of allowed tokens (with and without penalties), a
// vocabulary of one, and
// rows with NaN or ±Inf. A draw may differ from the reference only where
// its uniform number lies within 1e-6 of a boundary (the backend's sums
// round differently).
func testTokenSampler(e *env) {
	ts, ok := e.b.(runtime.TokenSampler)
	if !ok {
		e.t.Skipf("%s draws no tokens", e.b.Name())
	}
	scaled := func(s float64) func(int) []float32 {
		return func(V int) []float32 {
			x := e.randn(V)
			for i := range x {
				x[i] *= float32(s)
			}
			return x
		}
	}
	// Logits in steps of 0.5: classes of equal logits.
	classes := func(V int) []float32 {
		x := e.randn(V)
		for i := range x {
			x[i] = float32(math.Round(float64(x[i])*4) / 2)
		}
		return x
	}
	for _, c := range []struct {
		name   string
		V      int
		logits func(int) []float32
		rule   runtime.SampleParams
	}{
		{"greedy", 32002, classes, runtime.SampleParams{}},
		{"top-k 1", 1000, scaled(3), runtime.SampleParams{Temperature: 0.8, TopK: 1}},
		{"temperature", 32002, scaled(3), runtime.SampleParams{Temperature: 0.7}},
		{"temperature flat", 32002, scaled(0.1), runtime.SampleParams{Temperature: 1}},
		{"top-k", 1000, scaled(3), runtime.SampleParams{Temperature: 1, TopK: 50}},
		{"top-k classes", 1000, classes, runtime.SampleParams{Temperature: 1.3, TopK: 37}},
		{"top-p", 32002, scaled(3), runtime.SampleParams{Temperature: 1, TopP: 0.73}},
		{"top-p classes", 1000, classes, runtime.SampleParams{Temperature: 1, TopP: 0.61}},
		{"top-k top-p classes", 1000, classes, runtime.SampleParams{Temperature: 0.9, TopK: 120, TopP: 0.47}},
		{"greedy one token", 1, scaled(1), runtime.SampleParams{}},
		{"greedy seven classes", 7, classes, runtime.SampleParams{}},
		{"greedy 5000 classes", 5000, classes, runtime.SampleParams{}},
		{"one token", 1, scaled(1), runtime.SampleParams{Temperature: 1, TopP: 0.5}},
		{"seven", 7, scaled(2), runtime.SampleParams{Temperature: 1, TopK: 3}},
		// Temperatures near and below float32's range (1/T overflows
		// float32 under about 2.9e-39): DrawToken takes the largest
		// logit (the lowest id among equals, sampled among them).
		{"temperature 1e-30", 1000, scaled(3), runtime.SampleParams{Temperature: 1e-30}},
		{"temperature 1e-39", 1000, scaled(3), runtime.SampleParams{Temperature: 1e-39}},
		{"temperature 1e-50", 1000, scaled(3), runtime.SampleParams{Temperature: 1e-50}},
	} {
		e.t.Run(c.name, func(t *testing.T) {
			e := &env{t: t, b: e.b, rng: e.rng}
			const rows = 12
			x := make([]float32, 0, rows*c.V)
			for range rows {
				x = append(x, c.logits(c.V)...)
			}
			// Penalties on the odd rows: distinct tokens.
			var draw []int
			var rules []runtime.SampleParams
			for r := range rows {
				if r%4 == 3 {
					continue // rows not drawn from
				}
				p := c.rule
				p.U = e.rng.Float64()
				if r%2 == 1 {
					for _, tok := range e.rng.Perm(c.V)[:min(c.V, 30)] {
						p.Adjust = append(p.Adjust, runtime.LogitAdjust{Token: tok, Bias: float32(2*e.rng.Float64() - 1), Rep: 1 + float32(e.rng.Float64()), Sub: float32(e.rng.Float64())})
					}
				}
				// Masks on rows 2, 5 and 8 (with penalties on 5): a
				// third of the tokens, at least one.
				if r%3 == 2 {
					p.Allow = make([]uint64, (c.V+63)/64)
					for _, tok := range e.rng.Perm(c.V)[:max(1, c.V/3)] {
						p.Allow[tok>>6] |= 1 << (tok & 63)
					}
				}
				draw, rules = append(draw, r), append(rules, p)
			}
			lt := e.upload(x, rows, c.V)
			defer e.b.Free(lt)
			got := make([]int32, len(draw))
			if err := ts.SampleTokens(got, lt, draw, rules); err != nil {
				t.Fatal(err)
			}
			for j, r := range draw {
				row, p := x[r*c.V:(r+1)*c.V], rules[j]
				want := runtime.DrawToken(row, p)
				if int(got[j]) == want {
					continue
				}
				lo, hi := p, p
				lo.U, hi.U = max(p.U-1e-6, 0), min(p.U+1e-6, 0x1.fffffffffffffp-1)
				if int(got[j]) != runtime.DrawToken(row, lo) && int(got[j]) != runtime.DrawToken(row, hi) {
					t.Errorf("row %d (u %.9f): token %d, DrawToken gives %d", r, p.U, got[j], want)
				}
			}
		})
	}
	// Draws one after another whose rules repeat, change and come back (a
	// backend may keep the last draw's rules where they are): each must
	// follow its own rules and logits.
	e.t.Run("rules repeated", func(t *testing.T) {
		e := &env{t: t, b: e.b, rng: e.rng}
		const V, rows = 5000, 3
		greedy := []runtime.SampleParams{{}, {}, {}}
		hot := []runtime.SampleParams{{Temperature: 5, U: 0.9}, {Temperature: 5, U: 0.1}, {Temperature: 5, U: 0.5}}
		for i, c := range []struct {
			rows  []int
			rules []runtime.SampleParams
		}{
			{[]int{0, 1, 2}, greedy}, {[]int{0, 1, 2}, greedy}, {[]int{0, 1, 2}, hot}, {[]int{0, 1, 2}, greedy},
			{[]int{2, 0}, greedy[:2]}, {[]int{0, 1, 2}, greedy}, {[]int{0, 1, 2}, hot}, {[]int{0, 1, 2}, hot},
		} {
			x := e.randn(rows * V)
			lt := e.upload(x, rows, V)
			got := make([]int32, len(c.rows))
			err := ts.SampleTokens(got, lt, c.rows, c.rules)
			e.b.Free(lt)
			if err != nil {
				t.Fatal(err)
			}
			for j, r := range c.rows {
				row, p := x[r*V:(r+1)*V], c.rules[j]
				if want := runtime.DrawToken(row, p); int(got[j]) != want {
					t.Errorf("draw %d, row %d (%+v): token %d, DrawToken gives %d", i, r, p, got[j], want)
				}
			}
		}
	})
	e.t.Run("non-finite", func(t *testing.T) {
		e := &env{t: t, b: e.b, rng: e.rng}
		const V = 300
		x := e.randn(3 * V)
		x[17], x[40] = float32(math.NaN()), float32(math.Inf(1))
		x[V+5] = float32(math.Inf(-1))
		lt := e.upload(x, 3, V)
		defer e.b.Free(lt)
		got := make([]int32, 3)
		if err := ts.SampleTokens(got, lt, []int{0, 1, 2}, []runtime.SampleParams{{}, {Temperature: 1, U: 0.5}, {Temperature: 1, U: 0.5}}); err != nil {
			t.Fatal(err)
		}
		if got[0] != -18 || got[1] != -6 || got[2] < 0 || got[2] >= V {
			t.Errorf("tokens %v, want -18 (NaN at 17), -6 (-Inf at 5), a token", got)
		}
	})
	// Rows longer than a block of threads: the least non-finite index
	// wherever it falls (another thread, a later load of a thread, a later
	// pass), greedy or not.
	e.t.Run("non-finite long rows", func(t *testing.T) {
		e := &env{t: t, b: e.b, rng: e.rng}
		const V = 32002
		x := e.randn(4 * V)
		x[600], x[100] = float32(math.NaN()), float32(math.Inf(1))         // row 0: 100
		x[V+4100], x[V+31999] = float32(math.Inf(-1)), float32(math.NaN()) // row 1: 4100
		x[2*V+9000] = float32(math.NaN())                                  // row 2: 9000
		lt := e.upload(x, 4, V)
		defer e.b.Free(lt)
		got := make([]int32, 4)
		rules := []runtime.SampleParams{{}, {}, {Temperature: 1, U: 0.25}, {}}
		if err := ts.SampleTokens(got, lt, []int{0, 1, 2, 3}, rules); err != nil {
			t.Fatal(err)
		}
		if want := runtime.DrawToken(x[3*V:], rules[3]); got[0] != -101 || got[1] != -4101 || got[2] != -9001 || int(got[3]) != want {
			t.Errorf("tokens %v, want -101, -4101, -9001 and %d", got, want)
		}
	})
	// Every row greedy without penalties (a backend may draw such a draw
	// its own way, e.g. over several blocks a row): the largest logit,
	// the lowest index among equals wherever they lie in the row, and the
	// least non-finite index wherever the others are.
	e.t.Run("greedy only", func(t *testing.T) {
		e := &env{t: t, b: e.b, rng: e.rng}
		x, want := greedyRows(e)
		lt := e.upload(x, len(want), len(x)/len(want))
		defer e.b.Free(lt)
		got := make([]int32, len(want))
		rules := []runtime.SampleParams{{}, {TopK: 1, Temperature: 0.5}, {}, {}, {}, {Temperature: -1}}
		if err := ts.SampleTokens(got, lt, []int{0, 1, 2, 3, 4, 5}, rules); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("tokens %v, want %v", got, want)
		}
	})
}

// greedyRows are 6 rows of 32002 logits and their greedy tokens: equals
// far apart in a row, NaN and ±Inf (-1-j for the least non-finite index
// j), the largest logit last in its row.
func greedyRows(e *env) ([]float32, []int32) {
	const V, rows = 32002, 6
	x := e.randn(rows * V)
	for i := range x {
		x[i] = min(x[i], 3)
	}
	x[31000], x[2] = 5, 5                                              // row 0: 2 (equals far apart)
	x[V+20000], x[V+20001] = 4, 4                                      // row 1: 20000
	x[2*V+31999], x[2*V+7] = float32(math.NaN()), float32(math.Inf(1)) // row 2: -8
	x[3*V+16001] = float32(math.Inf(-1))                               // row 3: -16002
	x[4*V+32001] = 6                                                   // row 4: 32001
	// row 5: the largest of the random logits
	return x, []int32{2, 20000, -8, -16002, 32001, int32(runtime.DrawToken(x[5*V:], runtime.SampleParams{}))}
}

// testGreedyDrawer checks a runtime.GreedyDrawer: DrawGreedy gives
// SampleTokens' greedy tokens in its tensor and in the host slot that its
// slot tensor names; the slots alternate, and a draw pending in a slot
// keeps its tokens when a later draw overwrites the slot; where the
// backend records graphs, a recorded draw replayed into either slot does
// the same.
func testGreedyDrawer(e *env) {
	gd, ok := e.b.(runtime.GreedyDrawer)
	if !ok {
		e.t.Skipf("%s records no greedy draws", e.b.Name())
	}
	x, want := greedyRows(e)
	n, V := len(want), len(x)/len(want)
	// The same rows rotated by one: other tokens for the second draw.
	x2 := append(slices.Clone(x[V:]), x[:V]...)
	want2 := append(slices.Clone(want[1:]), want[0])
	lt, lt2 := e.upload(x, n, V), e.upload(x2, n, V)
	defer e.b.Free(lt)
	defer e.b.Free(lt2)
	dst := e.indices(make([]int32, n+2))
	defer e.b.Free(dst)
	slot := e.indices([]int32{0})
	defer e.b.Free(slot)
	setSlot := func(s int) {
		if s != 0 && s != 1 {
			e.t.Fatalf("GreedySlot %d, want 0 or 1", s)
		}
		raw := binary.LittleEndian.AppendUint32(nil, uint32(s))
		if err := e.b.UploadRaw(slot, raw, runtime.I32); err != nil {
			e.t.Fatal(err)
		}
	}
	check := func(what string, p runtime.PendingTokens, want []int32) {
		got := make([]int32, len(want))
		if err := p.Wait(got); err != nil {
			e.t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			e.t.Errorf("%s: host slot tokens %v, want %v", what, got, want)
		}
	}
	draw := func(what string, l runtime.Tensor, want []int32, run func()) runtime.PendingTokens {
		s := gd.GreedySlot()
		setSlot(s)
		run()
		p, err := gd.GreedyPending(s, len(want))
		if err != nil {
			e.t.Fatalf("%s: %v", what, err)
		}
		raw := make([]byte, 4*(n+2))
		if err := e.b.DownloadRaw(raw, runtime.I32, dst); err != nil {
			e.t.Fatal(err)
		}
		for j, w := range want {
			if g := int32(binary.LittleEndian.Uint32(raw[4*j:])); g != w {
				e.t.Errorf("%s: token %d in the tensor %d, want %d", what, j, g, w)
			}
		}
		return p
	}
	p1 := draw("draw 1", lt, want, func() { gd.DrawGreedy(dst, lt, slot) })
	p2 := draw("draw 2", lt2, want2, func() { gd.DrawGreedy(dst, lt2, slot) })
	// Into draw 1's slot again: its tokens are kept as they were.
	p3 := draw("draw 3", lt2, want2[:3], func() { gd.DrawGreedy(dst, lt2, slot) })
	check("draw 2", p2, want2)
	check("draw 1", p1, want)
	check("draw 3", p3, want2[:3])
	g, ok := e.b.(runtime.Grapher)
	if !ok {
		return
	}
	gr, err := g.Capture(func() error { gd.DrawGreedy(dst, lt, slot); return nil })
	if err != nil {
		e.t.Fatalf("recording a greedy draw: %v", err)
	}
	defer gr.Free()
	var pend []runtime.PendingTokens
	for i := range 3 {
		pend = append(pend, draw(fmt.Sprintf("replay %d", i), lt, want, func() {
			if err := gr.Launch(); err != nil {
				e.t.Fatal(err)
			}
		}))
	}
	for i, p := range pend {
		check(fmt.Sprintf("replay %d", i), p, want)
	}
}

// testTokenFeeder checks a runtime.TokenFeeder: draws left on the backend
// equal SampleTokens's and are in their tensor; three draws in flight at
// once (more than a backend may hold pending) come back right in any
// order; EmbeddingFed takes ids from the host and from the fed tokens, a
// negative fed token reading row 0.
func testTokenFeeder(e *env) {
	tf, ok := e.b.(runtime.TokenFeeder)
	if !ok {
		e.t.Skipf("%s feeds no tokens", e.b.Name())
	}
	const rows, V = 6, 1000
	x := e.randn(rows * V)
	for i := range x {
		x[i] *= 3
	}
	lt := e.upload(x, rows, V)
	defer e.b.Free(lt)
	draws := []struct {
		rows  []int
		rules []runtime.SampleParams
	}{
		{[]int{0, 2, 3, 5}, []runtime.SampleParams{{}, {Temperature: 1, U: 0.3}, {Temperature: 0.7, TopK: 20, U: 0.9}, {Temperature: 1, TopP: 0.8, U: 0.5}}},
		{[]int{1, 4}, []runtime.SampleParams{{Temperature: 1.3, U: 0.1}, {Adjust: []runtime.LogitAdjust{{Token: 3, Rep: 1, Sub: -100}}}}},
		{[]int{5, 4, 3}, []runtime.SampleParams{{}, {Temperature: 1, U: 0.77}, {}}},
	}
	want := make([][]int32, len(draws))
	for i, d := range draws {
		want[i] = make([]int32, len(d.rows))
		if err := tf.SampleTokens(want[i], lt, d.rows, d.rules); err != nil {
			e.t.Fatal(err)
		}
	}
	if want[1][1] != 3 {
		e.t.Fatalf("a logit raised by 100 not drawn greedily: %v", want[1])
	}
	dsts := make([]runtime.Tensor, len(draws))
	pend := make([]runtime.PendingTokens, len(draws))
	for i, d := range draws {
		dsts[i] = e.indices(make([]int32, 4))
		defer e.b.Free(dsts[i])
		p, err := tf.SampleTokensTo(dsts[i], lt, d.rows, d.rules)
		if err != nil {
			e.t.Fatal(err)
		}
		pend[i] = p
	}
	for _, i := range []int{2, 0, 1, 0} {
		got := make([]int32, len(draws[i].rows))
		if err := pend[i].Wait(got); err != nil {
			e.t.Fatal(err)
		}
		if !slices.Equal(got, want[i]) {
			e.t.Errorf("draw %d: SampleTokensTo %v, SampleTokens %v", i, got, want[i])
		}
		raw := make([]byte, 16)
		if err := e.b.DownloadRaw(raw, runtime.I32, dsts[i]); err != nil {
			e.t.Fatal(err)
		}
		for j, w := range want[i] {
			if g := int32(binary.LittleEndian.Uint32(raw[4*j:])); g != w {
				e.t.Errorf("draw %d: token %d in the tensor %d, want %d", i, j, g, w)
			}
		}
	}
	// EmbeddingFed: host ids, fed tokens 0..2 of draw 0, and a fed -4.
	const h = 24
	table := e.randn(V * h)
	tt := e.upload(table, V, h)
	defer e.b.Free(tt)
	fedNeg := e.indices([]int32{-4})
	defer e.b.Free(fedNeg)
	for _, c := range []struct {
		fed  runtime.Tensor
		ids  []int32
		rows []int32
	}{
		{dsts[0], []int32{5, -1, -3, 999, -2}, []int32{5, want[0][0], want[0][2], 999, want[0][1]}},
		{fedNeg, []int32{-1, 17}, []int32{0, 17}},
	} {
		idt := e.indices(c.ids)
		out := e.alloc(len(c.ids), h)
		tf.EmbeddingFed(out, tt, idt, c.fed)
		wantX := make([]float64, 0, len(c.ids)*h)
		for _, r := range c.rows {
			wantX = append(wantX, f64(table[int(r)*h:(int(r)+1)*h])...)
		}
		e.check("embedding fed", e.download(out), wantX, tolExact)
		e.b.Free(idt)
		e.b.Free(out)
	}
}

// ScoreRow is the reference of runtime.RowScorer for one row: the
// log-softmax of entry target and the k largest entries (descending, ties
// to the lower id) with theirs, the max subtracted and the sum in float64.
// Entries that are not numbers are never among the top: past a row's
// numbers, ids are -1 and top NaN (and a row with a NaN scores NaN).
func ScoreRow(row []float32, target, k int) (lp float64, ids []int32, top []float64) {
	mx := float64(slices.Max(row))
	var sum float64
	for _, v := range row {
		sum += math.Exp(float64(v) - mx)
	}
	lse := mx + math.Log(sum)
	if j := slices.Index(row, slices.Max(row)); k == 1 && j >= 0 {
		// (The first of the largest, without sorting the row; a row with
		// a NaN is sorted.)
		return float64(row[target]) - lse, []int32{int32(j)}, []float64{float64(row[j]) - lse}
	}
	var order []int
	for j, v := range row {
		if v == v {
			order = append(order, j)
		}
	}
	slices.SortStableFunc(order, func(a, c int) int { return cmp.Compare(row[c], row[a]) })
	for j := range k {
		if j < len(order) {
			ids, top = append(ids, int32(order[j])), append(top, float64(row[order[j]])-lse)
		} else {
			ids, top = append(ids, -1), append(top, math.NaN())
		}
	}
	return float64(row[target]) - lse, ids, top
}

// ScoreRows is ScoreRow over logits [len(targets), V], with the flat
// results of runtime.RowScorer.ScoreRows.
func ScoreRows(logits []float32, V int, targets []int, k int) (lp []float64, ids []int32, top []float64) {
	lp = make([]float64, len(targets))
	for r := range targets {
		l, i, tp := ScoreRow(logits[r*V:(r+1)*V], targets[r], k)
		lp[r], ids, top = l, append(ids, i...), append(top, tp...)
	}
	return lp, ids, top
}

// NextLogprobs scores a full forward's logits [len(ids), V] as the engine
// scores a prompt: for each row r before the last, the log-probability of
// ids[r+1], and the most likely token there with its log-probability
// (ScoreRow).
func NextLogprobs(logits []float32, V int, ids []int) (lps []float64, best []int, bestLP []float64) {
	for r := 0; r+1 < len(ids); r++ {
		lp, top, tlp := ScoreRow(logits[r*V:(r+1)*V], ids[r+1], 1)
		lps, best, bestLP = append(lps, lp), append(best, int(top[0])), append(bestLP, tlp[0])
	}
	return lps, best, bestLP
}

func testRowScorer(e *env) {
	rs, ok := e.b.(runtime.RowScorer)
	if !ok {
		e.t.Skipf("%s scores no rows", e.b.Name())
	}
	// Rows of 1,000 (the block's stride does not divide it) with ties: the
	// largest value three times (ids 7, 300 and 999), another value twice,
	// and one row that is all the same value.
	const rows, V = 6, 1000
	x := e.randn(rows * V)
	for r := range rows {
		row := x[r*V : (r+1)*V]
		switch r {
		case 1:
			row[7], row[300], row[999] = 9, 9, 9
			row[20], row[21] = 8, 8
		case 2:
			for j := range row {
				row[j] = -1.5
			}
		case 3:
			row[0] = 50 // the softmax nearly one-hot
		case 5:
			// Not numbers but ids 3 and 10: a NaN log-probability, two
			// entries, then none (id -1).
			for j := range row {
				if j != 3 && j != 10 {
					row[j] = float32(math.NaN())
				}
			}
		}
	}
	targets := []int{0, 999, 512, 0, 1, 998}
	lt := e.upload(x, rows, V)
	defer e.b.Free(lt)
	for _, k := range []int{0, 1, 5} {
		lp, ids, top, err := rs.ScoreRows(lt, targets, k)
		if err != nil {
			e.t.Fatalf("k %d: %v", k, err)
		}
		if len(lp) != rows || len(ids) != rows*k || len(top) != rows*k {
			e.t.Fatalf("k %d: %d, %d, %d results for %d rows", k, len(lp), len(ids), len(top), rows)
		}
		for r := range rows {
			wlp, wids, wtop := ScoreRow(x[r*V:(r+1)*V], targets[r], k)
			// (NaN where the reference has NaN, and only there.)
			near := func(a, b float64) bool { return a != a && b != b || math.Abs(a-b) <= 1e-9 }
			if !near(lp[r], wlp) {
				e.t.Errorf("k %d row %d: log-probability %.12g, want %.12g", k, r, lp[r], wlp)
			}
			for j := range k {
				if ids[r*k+j] != wids[j] || !near(top[r*k+j], wtop[j]) {
					e.t.Errorf("k %d row %d entry %d: %d %.12g, want %d %.12g", k, r, j, ids[r*k+j], top[r*k+j], wids[j], wtop[j])
				}
			}
		}
	}
	if _, _, _, err := rs.ScoreRows(lt, []int{0, 1, 2, 3, 4, V}, 1); err == nil {
		e.t.Error("a target outside the vocabulary was accepted")
	}
}
