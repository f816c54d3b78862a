package model

import (
	"math"
	"testing"
)

// TestRouteRowsWeights: routeRows' weights are the fp32 softmax
// probabilities of the chosen experts bit for bit (divided by their fp32
// sum where normTopK), also where a probability is small: marking an
// expert taken must not round its probability.
func TestRouteRowsWeights(t *testing.T) {
	logits := []float32{3, -2.5, 0.1, -4, 1.7, -3.3, 0.4, -1.2}
	E := len(logits)
	most := float32(3)
	probs := make([]float32, E)
	var sum float32
	for e, v := range logits {
		probs[e] = float32(math.Exp(float64(v - most)))
		sum += probs[e]
	}
	for e := range probs {
		probs[e] /= sum
	}
	// Top 4 by hand: experts 0, 4, 6, 2.
	top := []int{0, 4, 6, 2}
	var total float32
	for _, e := range top {
		total += probs[e]
	}
	for _, norm := range []bool{false, true} {
		routes := routeRows(logits, 1, E, len(top), norm)
		for _, e := range top {
			want := probs[e]
			if norm {
				want /= total
			}
			if len(routes[e].weights) != 1 || routes[e].weights[0] != want {
				t.Errorf("normTopK %v: expert %d weight %v, want %v (%v)", norm, e, routes[e].weights, want, probs[e])
			}
		}
	}
}
