package publish_test

import (
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/publish"
)

// TestPublishedBranchSizes checks the planned checkpoint of the real
// openchat-3.5-1210 shape against the sizes of the published branches
// (../shared/docs/branches.md, GB = 10^9 bytes): a fixed function of shape,
// bits and group size, so within 1%.
func TestPublishedBranchSizes(t *testing.T) {
	cfg, err := hfconfig.Load(fixture(t, "configs/openchat-3.5-1210"))
	if err != nil {
		t.Fatal(err)
	}
	published := map[string]float64{
		"main": 4.16, "gptq-4bit-32g-actorder_True": 4.57, "gptq-8bit--1g-actorder_True": 7.52,
		"gptq-8bit-128g-actorder_True": 7.68, "gptq-8bit-32g-actorder_True": 8.17, "gptq-4bit-64g-actorder_True": 4.30,
	}
	for _, b := range publish.PublishedBranches {
		t.Run(b.Name, func(t *testing.T) {
			qc := gptq.DefaultQuantizeConfig()
			qc.Bits, qc.GroupSize, qc.DescAct, qc.DampPercent = b.Bits, b.GroupSize, b.DescAct, b.Damp
			infos, err := publish.Plan(cfg, qc)
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, ti := range infos {
				n += int64(ti.ByteSize())
			}
			got, want := float64(n)/1e9, published[b.Name]
			if math.Abs(got/want-1) > 0.01 {
				t.Errorf("planned %.3f GB, published %.2f GB", got, want)
			}
			t.Logf("%s: %.3f GB (published %.2f GB), %d tensors", b.Name, got, want, len(infos))
		})
	}
}
