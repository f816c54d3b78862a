package runtime

import (
	"fmt"
	"math"
	"slices"
)

// RouteRow chooses one row's experts from its router logits l (one an
// expert) as ExpertRouter.RouteTopK specifies: a softmax over all the
// experts in fp32 (each exponential in float64, rounded once), the topK
// largest probabilities, the lower expert first among equal ones, each
// divided by their fp32 sum (in the order chosen) where normTopK. It
// writes them in the order chosen to ids and weights (at least topK
// long), using probs (len(l)) as scratch, and returns how many it chose:
// topK, or none where l holds a NaN (no probability then compares).
func RouteRow(l []float32, topK int, normTopK bool, probs []float32, ids []int32, weights []float32) int {
	most := float32(math.Inf(-1))
	for _, v := range l {
		most = max(most, v) // (max is NaN where v is: then every probability is)
	}
	var sum float32
	for e, v := range l {
		probs[e] = float32(math.Exp(float64(v - most)))
		sum += probs[e]
	}
	for e := range probs {
		probs[e] /= sum
	}
	n := 0
	var total float32
	for range topK {
		best := -1
		for e, p := range probs {
			if p >= 0 && (best < 0 || p > probs[best]) && !chosen(ids[:n], e) {
				best = e
			}
		}
		if best < 0 {
			break
		}
		ids[n], weights[n] = int32(best), probs[best]
		total += probs[best]
		n++
	}
	if normTopK {
		for i := range n {
			weights[i] /= total
		}
	}
	return n
}

func chosen(ids []int32, e int) bool {
	for _, id := range ids {
		if int(id) == e {
			return true
		}
	}
	return false
}

// ExpertRun is the most slots of one expert in a run of RouteTopK's order
// (see ExpertOrder): the rows one tile of the CUDA backend's products
// takes.
const ExpertRun = 8

// ExpertRunSlots bounds the slots of ExpertOrder (its runs encode fewer
// start places than this).
const ExpertRunSlots = 1 << 11

// ExpertOrder writes RouteTopK's order for the slots' experts ids (-1 for
// none; experts the router's count): order[:len(ids)] lists the slots by
// expert, stably, the slots of -1 last; order[len(ids):2·len(ids)] lists
// the runs of that list, each a stretch of at most ExpertRun slots of one
// expert (an expert's slots cut into runs from its first), in order,
// encoded by ExpertRunCode, and -1 after the last. The slots of -1 are in
// no run.
func ExpertOrder(ids []int32, experts int, order []int32) {
	S := len(ids)
	if S >= ExpertRunSlots || experts >= 1<<16 {
		panic(fmt.Sprintf("runtime: expert order of %d slots of %d experts: runs encode fewer than 2,048 slots and 65,536 experts", S, experts))
	}
	key := func(s int32) int32 {
		if ids[s] < 0 {
			return int32(experts)
		}
		return ids[s]
	}
	ord := order[:S]
	for s := range ord {
		ord[s] = int32(s)
	}
	slices.SortStableFunc(ord, func(a, b int32) int { return int(key(a) - key(b)) })
	runs := order[S : 2*S]
	n := 0
	for i := 0; i < S && ids[ord[i]] >= 0; {
		e := ids[ord[i]]
		j := i + 1
		for j < S && ids[ord[j]] == e {
			j++
		}
		for st := i; st < j; st += ExpertRun {
			runs[n] = ExpertRunCode(st, min(ExpertRun, j-st), int(e))
			n++
		}
		i = j
	}
	for ; n < S; n++ {
		runs[n] = -1
	}
}

// ExpertRunCode encodes a run of ExpertOrder: its first place in the
// order, its slots (1 to ExpertRun) and its expert, as start | count<<11 |
// expert<<15 (start below 2,048, the expert below 65,536).
func ExpertRunCode(start, count, expert int) int32 {
	return int32(start | count<<11 | expert<<15)
}
