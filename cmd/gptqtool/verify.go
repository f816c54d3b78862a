package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

func init() { subcommands = append(subcommands, newVerifyCmd) }

func newVerifyCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "verify",
		Short: "Measure a checkpoint: perplexity, KL against a baseline, GPTQ format conformance",
	})
	cmd.AddCommand(newPerplexityCmd(), newKLCmd(), newFormatCmd())
	return cmd
}

// evalFlags are the flags perplexity and kl share.
type evalFlags struct {
	model, text, device string
	dtype               string
	ctx, maxWindows     int
	threads             int
	asJSON              bool
	// ctxGiven says whether --ctx was given: without it, setup sets ctx
	// to defaultCtx or the checkpoints' context where that is smaller.
	ctxGiven func() bool
}

// defaultCtx is verify's window length without --ctx (the GPTQ paper's
// perplexity windows), lowered to a checkpoint's max_position_embeddings.
const defaultCtx = 2048

func (f *evalFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.model, "model", "", "checkpoint directory (fp16/bf16/fp32 or GPTQ), or a llama-, qwen2- or qwen3-architecture GGUF file (its weights dequantized; its text tokenized with the tokenizer files beside it)")
	fs.StringVar(&f.text, "text", "", "text file to evaluate, e.g. wiki.test.raw")
	fs.IntVar(&f.ctx, "ctx", 0, fmt.Sprintf("window length in tokens (default %d, or the model's or the baseline's max_position_embeddings where smaller)", defaultCtx))
	f.ctxGiven = func() bool { return fs.Changed("ctx") }
	fs.IntVar(&f.maxWindows, "max-windows", 0, "evaluate at most this many windows (0 = all)")
	fs.StringVar(&f.device, "device", "auto", deviceHelp)
	fs.StringVar(&f.dtype, "dtype", "auto", dtypeHelp)
	fs.IntVar(&f.threads, "threads", 0, "CPU threads (0 = all cores)")
	fs.BoolVar(&f.asJSON, "json", false, "print one JSON document")
	cmd.MarkFlagRequired("model")
	cmd.MarkFlagRequired("text")
}

// setup makes the backend and tokenizes the text with the model's tokenizer.
// baseline, where not "", is the checkpoint evaluated with the model: it is
// opened and checked (model.Open) before anything runs, --ctx is checked
// against its context too, and it is returned for loadCheckpoint to load
// without reading its headers again (the caller closes it). Without --ctx,
// f.ctx is set to defaultCtx or the smallest context of the two where
// smaller.
func (f *evalFlags) setup(log io.Writer, baseline string) (runtime.Backend, []int, *model.Checkpoint, error) {
	given := f.ctxGiven == nil || f.ctxGiven()
	if !given {
		f.ctx = defaultCtx
	}
	switch {
	case f.ctx < 2:
		return nil, nil, nil, usageError{fmt.Errorf("--ctx %d: want at least 2 tokens per window", f.ctx)}
	case f.maxWindows < 0:
		return nil, nil, nil, usageError{fmt.Errorf("--max-windows %d: want 0 (all) or more", f.maxWindows)}
	}
	// (A config that does not load is left to the load to report.)
	if cfg, err := modelConfig(f.model); err == nil {
		if !given && cfg.MaxPositionEmbeddings > 0 {
			f.ctx = min(f.ctx, cfg.MaxPositionEmbeddings)
		}
		if err := checkCtx(f.ctx, cfg, "model"); err != nil {
			return nil, nil, nil, err
		}
	}
	var base *model.Checkpoint
	if baseline != "" {
		var err error
		if base, err = model.Open(baseline); err != nil {
			return nil, nil, nil, err
		}
		if !given && base.Config.MaxPositionEmbeddings > 0 {
			f.ctx = min(f.ctx, base.Config.MaxPositionEmbeddings)
		}
		if err := checkCtx(f.ctx, base.Config, "baseline"); err != nil {
			base.Close()
			return nil, nil, nil, err
		}
	}
	fail := func(err error) (runtime.Backend, []int, *model.Checkpoint, error) {
		if base != nil {
			base.Close()
		}
		return nil, nil, nil, err
	}
	b, err := newBackend(f.device, f.threads, log)
	if err != nil {
		return fail(err)
	}
	ids, err := loadText(f.model, f.text)
	if err != nil {
		closeBackend(b)
		return fail(err)
	}
	return b, ids, base, nil
}

// oneWindow refuses a text of ids shorter than one window of --ctx,
// naming the file (the commands check it once their checkpoints are
// checked, before any model runs). Without --ctx the window is called the
// default one, not "--ctx N", a flag the user did not give.
func (f *evalFlags) oneWindow(ids []int) error {
	if verify.Windows(len(ids), f.ctx, 0) > 0 {
		return nil
	}
	if f.ctxGiven != nil && !f.ctxGiven() {
		return fmt.Errorf("--text %s: %s (BOS included), fewer than one window of %d tokens (the default window: --ctx not given)", f.text, count(len(ids), "token"), f.ctx)
	}
	return fmt.Errorf("--text %s: %s (BOS included), fewer than one window of --ctx %d", f.text, count(len(ids), "token"), f.ctx)
}

// baselineText tokenizes --text with the baseline's tokenizer and refuses
// a baseline whose tokenizer splits it otherwise than the model's (ids):
// the two are compared on the same windows of the same ids, which a
// vocabulary of the same size does not promise. cmd names the command in
// the error.
func (f *evalFlags) baselineText(cmd, baseline string, ids []int) error {
	baseIDs, err := loadText(baseline, f.text)
	if err != nil {
		return err
	}
	if i := firstDiff(ids, baseIDs); i >= 0 {
		return fmt.Errorf("%s: %s and %s tokenize --text %s differently (from token %d of %d and %d): the models must share a tokenizer",
			cmd, f.model, baseline, f.text, i, len(ids), len(baseIDs))
	}
	return nil
}

// tokenizerFits refuses the tokenizer of checkpoint dir where text can
// encode to an id past config.json's vocab_size (cfg): an ordinary piece,
// BOS or EOS at or past it would index past the embedding, which the model
// reports only once a window or sample reaches one. Special added tokens
// past vocab_size alone (a pad token a fine-tune added without resizing the
// embedding, which transformers loads too) are accepted: text encodes to
// them only where it spells them, and the model refuses such an id. (Fewer
// tokens than vocab_size is fine: vocabularies are often padded.)
func tokenizerFits(dir string, tok *tokenizer.Tokenizer, cfg *hfconfig.Config) error {
	if cfg.VocabSize <= 0 || tok.VocabSize() <= cfg.VocabSize {
		return nil
	}
	for id := cfg.VocabSize; id < tok.VocabSize(); id++ {
		if !tok.IsSpecial(id) || id == tok.BOS() || id == tok.EOS() {
			return fmt.Errorf("%s: the tokenizer has %d tokens, more than vocab_size %d in %s (token %d %q is past it): its tokenizer files are not the model's", dir, tok.VocabSize(), cfg.VocabSize, cfg.File, id, tok.Piece(id))
		}
	}
	return nil
}

// firstDiff is the first index where a and b differ (one ending first
// counts), or -1 where they are equal.
func firstDiff(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// count is n and noun, plural but for one.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// checkCtx refuses a --ctx longer than the context of the checkpoint whose
// config is cfg (what names it: "model" or "baseline"). It is a usage error
// like a window shorter than 2 tokens: both are about the flag, not the
// checkpoint.
func checkCtx(ctx int, cfg *hfconfig.Config, what string) error {
	if cfg.MaxPositionEmbeddings > 0 && ctx > cfg.MaxPositionEmbeddings {
		return usageError{fmt.Errorf("--ctx %d exceeds the %s's %s", ctx, what, cfg.ContextLimit())}
	}
	return nil
}

// loadModelTokenizer loads the tokenizer of a checkpoint directory or of a
// GGUF file (the Hugging Face tokenizer files beside it, which must be the
// file's own vocabulary) and checks that it fits the model's config.
func loadModelTokenizer(modelPath string) (*tokenizer.Tokenizer, error) {
	tok, err := tokenizer.Load(tokenizerDir(modelPath))
	if err != nil {
		if gguf.IsFile(modelPath) {
			return nil, fmt.Errorf("%w: a GGUF model's text is tokenized with the Hugging Face tokenizer files beside it (tokenizer.json …, in %s)", err, filepath.Dir(modelPath))
		}
		return nil, err
	}
	// (A config that does not load is left to the model's load to report.)
	if cfg, err := modelConfig(modelPath); err == nil {
		if err := tokenizerFits(modelPath, tok, cfg); err != nil {
			return nil, err
		}
	}
	if gguf.IsFile(modelPath) {
		if err := ggufTokenizerMatches(modelPath, tok); err != nil {
			return nil, err
		}
	}
	return tok, nil
}

// loadText tokenizes a text file the way the perplexity convention asks: the
// whole file in one piece, BOS prepended once where the tokenizer puts one
// before a text (Llama, Mistral, Llama 3; Qwen2 has none), as the GPTQ
// paper's code (the Hugging Face tokenizer on the whole text) and
// llama.cpp's perplexity (add_bos) do.
func loadText(modelDir, path string) ([]int, error) {
	tok, err := loadModelTokenizer(modelDir)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--text: %w", err)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("--text %s: invalid UTF-8 at byte %d: want a UTF-8 text file", path, tokenizer.InvalidUTF8At(data))
	}
	ids, err := tok.Encode(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if tok.AddBOS() {
		ids = append([]int{tok.BOS()}, ids...)
	}
	return ids, nil
}

func newPerplexityCmd() *cobra.Command {
	var f evalFlags
	var baseline string
	cmd := &cobra.Command{
		Use:   "perplexity --model DIR --text FILE [--ctx N] [--max-windows N] [--baseline DIR]",
		Short: "Perplexity on a text in non-overlapping windows (GPTQ paper convention)",
		Long: `perplexity tokenizes the text once with the model's tokenizer, prepends BOS once (where the
tokenizer puts one before a text: not for Qwen2), cuts the ids into non-overlapping windows of
--ctx tokens (the tail is dropped) and reports
exp(mean over windows of the mean cross-entropy of each window's tokens after the first).
With --baseline, the baseline model (which must share the tokenizer) is evaluated on the
same windows and the delta printed.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			// The baseline is loaded once the model is done with (one model
			// in memory at a time), but opened and checked (setup) and its
			// text tokenized first: a bad baseline is refused before the
			// model's windows run, not after them.
			b, ids, baseCP, err := f.setup(cmd.ErrOrStderr(), baseline)
			if err != nil {
				return err
			}
			defer closeBackend(b)
			if baseCP != nil {
				defer baseCP.Close()
			}
			if err := f.oneWindow(ids); err != nil {
				return err
			}
			if baseCP != nil {
				// The baseline runs on the model's windows: a delta
				// between two tokenizations' perplexities per token
				// would compare nothing.
				if err := f.baselineText("perplexity", baseline, ids); err != nil {
					return err
				}
			}
			m, err := loadModel(f.model, b, f.dtype, f.ctx)
			if err != nil {
				return err
			}
			res, err := evalPerplexity(ctx, cmd.ErrOrStderr(), f.model, m, ids, f)
			if err != nil {
				return err
			}
			out := map[string]any{"model": f.model, "text": f.text, "ctx": f.ctx, "result": res}
			var base *verify.PerplexityResult
			if baseline != "" {
				bm, err := loadCheckpoint(baseCP, b, f.dtype, f.ctx)
				if err != nil {
					return err
				}
				if base, err = evalPerplexity(ctx, cmd.ErrOrStderr(), baseline, bm, ids, f); err != nil {
					return err
				}
				out["baseline"] = baseline
				out["baseline_result"] = base
				out["delta"] = res.PPL - base.PPL
				out["ratio"] = res.PPL / base.PPL
			}
			w := cmd.OutOrStdout()
			if f.asJSON {
				return writeJSON(w, out)
			}
			fmt.Fprintf(w, "ppl %.4f\n", res.PPL)
			fmt.Fprintf(w, "tokens %d windows %d ctx %d  %.1f tokens/s  %.1fs\n", res.Tokens, res.Windows, f.ctx, res.TokensPerSec, res.Seconds)
			if base != nil {
				fmt.Fprintf(w, "baseline ppl %.4f (%s)\n", base.PPL, baseline)
				fmt.Fprintf(w, "delta %+.4f (%+.3f%%)\n", res.PPL-base.PPL, 100*(res.PPL/base.PPL-1))
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&baseline, "baseline", "", "also evaluate this checkpoint (e.g. the FP16 model) and print the delta")
	return cmd
}

// evalPerplexity runs the perplexity of m (loaded from dir), and closes it.
func evalPerplexity(ctx context.Context, log io.Writer, dir string, m *model.Model, ids []int, f evalFlags) (*verify.PerplexityResult, error) {
	defer m.Close()
	bar := newProgress(log, "perplexity "+dir, verify.Windows(len(ids), f.ctx, f.maxWindows))
	defer bar.finish()
	return verify.Perplexity(ctx, m, ids, verify.PerplexityOptions{Ctx: f.ctx, MaxWindows: f.maxWindows, Progress: bar.set})
}

func newKLCmd() *cobra.Command {
	var f evalFlags
	var baseline string
	cmd := &cobra.Command{
		Use:   "kl --model DIR --baseline DIR --text FILE [--ctx N] [--max-windows N]",
		Short: "KL divergence of a model's next-token distributions from a baseline's (e.g. GPTQ vs FP16)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			if baseline == "" {
				return usageError{fmt.Errorf("--baseline: want the reference checkpoint's directory")}
			}
			b, ids, baseCP, err := f.setup(cmd.ErrOrStderr(), baseline)
			if err != nil {
				return err
			}
			defer closeBackend(b)
			defer baseCP.Close()
			if err := f.oneWindow(ids); err != nil {
				return err
			}
			// KL compares the two models' distributions token by token.
			if err := f.baselineText("kl", baseline, ids); err != nil {
				return err
			}
			m, err := loadModel(f.model, b, f.dtype, f.ctx)
			if err != nil {
				return err
			}
			defer m.Close()
			base, err := loadCheckpoint(baseCP, b, f.dtype, f.ctx)
			if err != nil {
				return err
			}
			defer base.Close()
			bar := newProgress(cmd.ErrOrStderr(), "kl", verify.Windows(len(ids), f.ctx, f.maxWindows))
			res, err := verify.KL(ctx, m, base, ids, verify.PerplexityOptions{Ctx: f.ctx, MaxWindows: f.maxWindows, Progress: bar.set})
			bar.finish()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.asJSON {
				return writeJSON(w, map[string]any{"model": f.model, "baseline": baseline, "text": f.text, "ctx": f.ctx, "result": res})
			}
			fmt.Fprintf(w, "kl %.6f nats/token (max %.4f)\n", res.MeanKL, res.MaxKL)
			fmt.Fprintf(w, "top-1 agreement %.2f%%\n", 100*res.Top1Agree)
			fmt.Fprintf(w, "ppl %.4f, baseline %.4f\n", res.PPL, res.BaselinePPL)
			fmt.Fprintf(w, "tokens %d windows %d ctx %d  %.1f tokens/s\n", res.Tokens, res.Windows, f.ctx, res.TokensPerSec)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&baseline, "baseline", "", "the reference checkpoint (e.g. the FP16 model)")
	cmd.MarkFlagRequired("baseline")
	return cmd
}

func newFormatCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "format DIR",
		Short: "Check a GPTQ checkpoint (or AWQ, compressed-tensors) against the on-disk format loaders expect",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := verify.CheckFormat(args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(w, r); err != nil {
					return err
				}
			} else {
				for _, c := range r.Checks {
					mark := "ok  "
					if !c.OK {
						mark = "FAIL"
					}
					fmt.Fprintf(w, "%s %s", mark, c.Name)
					if c.Detail != "" {
						fmt.Fprintf(w, ": %s", c.Detail)
					}
					fmt.Fprintln(w)
				}
				if r.Method != "gptq" {
					fmt.Fprintf(w, "(%s checkpoint checked as the GPTQ checkpoint it reads as; no GPTQ loader table: gptqtool convert writes it as GPTQ)\n", r.Method)
					if !r.OK {
						return fmt.Errorf("%s: format check failed", args[0])
					}
					return nil
				}
				fmt.Fprintln(w, "loaders:")
				for _, l := range r.Loaders {
					mark := "yes"
					if !l.OK {
						mark = "no "
					}
					fmt.Fprintf(w, "  %s %s  %s\n", mark, l.Loader, l.Reason)
				}
			}
			if !r.OK {
				return fmt.Errorf("%s: format check failed", args[0])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}

// ggufTokenizerMatches checks that the tokenizer files beside a GGUF file
// are its model's: the file's vocabulary (tokenizer.ggml.tokens) holds
// the same piece at every id both have, [PADn] fillers aside (a
// byte-level vocabulary's pieces are spelt alike in both), and the same
// BOS id where the tokenizer files have one (llama.cpp's converter names
// one for tokenizers that have none, as Qwen2's).
func ggufTokenizerMatches(path string, tok *tokenizer.Tokenizer) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dir := filepath.Dir(path)
	if bos, err := gguf.Value[uint32](f, "tokenizer.ggml.bos_token_id"); err == nil && tok.BOS() >= 0 && int(bos) != tok.BOS() {
		return fmt.Errorf("%s: BOS is token %d, the tokenizer files in %s say %d: they are not this model's", path, bos, dir, tok.BOS())
	}
	pieces, err := gguf.Value[[]string](f, "tokenizer.ggml.tokens")
	if err != nil {
		return nil // (a file without a vocabulary: nothing to compare)
	}
	for id := range min(len(pieces), tok.VocabSize()) {
		if p := pieces[id]; p != tok.Piece(id) && !strings.HasPrefix(p, "[PAD") {
			return fmt.Errorf("%s: token %d is %q, the tokenizer files in %s say %q: they are not this model's", path, id, p, dir, tok.Piece(id))
		}
	}
	return nil
}
