package runtime

import "math"

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
