package publish

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// ImatrixSummary is what WriteImatrix did.
type ImatrixSummary struct {
	Out      string   `json:"out"`
	Weights  int      `json:"weights"`
	Samples  int      `json:"samples"`
	Tokens   int64    `json:"tokens"`
	Seconds  float64  `json:"seconds"`
	Datasets []string `json:"datasets"`
}

// CheckImatrixOut refuses an --out that is not a .gguf path or that exists
// (unless force), before any work.
func CheckImatrixOut(out string, force bool) error {
	if !strings.EqualFold(filepath.Ext(out), ".gguf") {
		return fmt.Errorf("imatrix: --out %s: the importance matrix is written as llama.cpp's GGUF imatrix (llama-quantize --imatrix reads it): want a path ending in .gguf", out)
	}
	if err := checkGGUFOut(out, force); err != nil {
		return fmt.Errorf("imatrix: %w", err)
	}
	return nil
}

// WriteImatrix runs samples through m (the model of modelDir, unquantized)
// and writes the importance matrix of its Linear weights to out, under the
// GGUF names Convert gives them: convert --gguf … --imatrix reads it, and
// so does llama-quantize. datasets name the calibration data in the file.
func WriteImatrix(ctx context.Context, m *model.Model, samples []quantize.Sample, datasets []string, out string, progress func(done, total int), log io.Writer) (*ImatrixSummary, error) {
	start := time.Now()
	imp, err := quantize.CollectImportance(ctx, m, samples, progress)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(datasets))
	for i, d := range datasets {
		names[i] = filepath.Base(d)
	}
	mat, err := gguf.NewImatrix(m.Config, imp.Sum2, imp.Counts, imp.Tokens, imp.Samples, imp.SeqLen, names)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("imatrix: --out %s: %w", out, err)
	}
	if err := mat.Write(out); err != nil {
		return nil, err
	}
	sum := &ImatrixSummary{Out: out, Weights: len(mat.Entries), Samples: imp.Samples, Tokens: imp.Tokens, Seconds: time.Since(start).Seconds(), Datasets: names}
	fmt.Fprintf(log, "imatrix: %d weights over %d samples (%d tokens) → %s in %.1fs\n", sum.Weights, sum.Samples, sum.Tokens, out, sum.Seconds)
	return sum, nil
}
