// Package backendtest is the conformance suite every runtime.Backend must
// pass: each op runs on random inputs and is compared with a plain float64
// reference loop written from the op's documentation, by normalized mean
// squared error (NMSE = Σ(got-want)² / Σwant²) against a per-op tolerance.
//
// A backend's test calls Run with a constructor:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func() runtime.Backend { return cpu.New(0) })
//	}
//
// Shapes include the awkward ones (K not a multiple of 8, one row, GQA,
// sliding windows shorter than the sequence, attention at a cache offset),
// so that tiling and tail code is exercised.
package backendtest
