package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gptqtool/gptqtool/calibrate"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func init() { subcommands = append(subcommands, newCalibrateCmd) }

// calibrationFlags holds the calibration-data flags shared by calibrate and
// quantize (registered by addCalibrationFlags).
type calibrationFlags struct {
	datasets       []string
	format         string
	nsamples       int
	seqLen         int
	seed           int64
	mode           string
	textColumn     string
	template       string
	chatTemplate   string
	systemMessages bool
	flags          *pflag.FlagSet // to tell a flag given as 0 from its default
}

// addCalibrationFlags registers the calibration-data flags on fs.
func addCalibrationFlags(fs *pflag.FlagSet, o *calibrationFlags) {
	o.flags = fs
	fs.StringSliceVar(&o.datasets, "dataset", nil, "calibration data: parquet, JSON, JSONL or text files (the last three also .gz), directories or globs (repeat or comma-separate); read as one dataset (a directory: its parquet files, as a Hub download holds them, else its JSON, JSONL and text files)")
	fs.StringVar(&o.format, "dataset-format", "", "force the format of every dataset file: parquet, json, jsonl, text (whole file one record) or paragraphs (split on blank lines); default by extension")
	fs.IntVar(&o.nsamples, "nsamples", calibrate.DefaultNSamples, "number of calibration samples")
	fs.IntVar(&o.seqLen, "seq-len", 0, "tokens per sample (default min(4096, the model's max_position_embeddings))")
	fs.Int64Var(&o.seed, "seed", 0, "seed of the sample selection (Python random.seed compatible)")
	fs.StringVar(&o.mode, "mode", calibrate.ModeRandom, "sampling: random (windows over the concatenated token stream) or record (one record per sample, truncated or padded with a mask)")
	fs.StringVar(&o.textColumn, "text-column", "", "column (dotted path for nested columns) holding the text of plain corpora (default: conversations/messages, instruction rows, then text)")
	fs.StringVar(&o.template, "template", "", `row template (not a chat template: see --chat-template) over column names, e.g. "Q: {question}\nA: {answer}" ({col?} optional, {{ }} literal braces, \n \t escapes)`)
	fs.StringVar(&o.chatTemplate, "chat-template", "", "chat template for instruction and conversation rows: openchat or openchat-math (default: tokenizer_config.json's chat_template)")
	fs.BoolVar(&o.systemMessages, "system-messages", false, "keep system turns of conversation rows (dropped by default, as openchat does)")
}

// options turns the flags and a model directory into calibrate.Options,
// loading the tokenizer and max_position_embeddings from modelDir.
func (o *calibrationFlags) options(modelDir string, log io.Writer) (calibrate.Options, error) {
	if len(o.datasets) == 0 {
		return calibrate.Options{}, usageError{errors.New("--dataset is required: pass a parquet, JSON, JSONL or text file, a directory or a glob")}
	}
	if modelDir == "" {
		return calibrate.Options{}, usageError{errors.New("--model is required (the tokenizer and context length come from it)")}
	}
	switch {
	case o.nsamples <= 0:
		return calibrate.Options{}, usageError{fmt.Errorf("--nsamples %d: want a positive number", o.nsamples)}
	case o.seqLen < 0 || o.seqLen == 0 && o.flags != nil && o.flags.Changed("seq-len"):
		return calibrate.Options{}, usageError{fmt.Errorf("--seq-len %d: want a positive number (leave it out for the default, min(4096, max_position_embeddings))", o.seqLen)}
	case o.mode != calibrate.ModeRandom && o.mode != calibrate.ModeRecord:
		return calibrate.Options{}, usageError{fmt.Errorf("--mode %q: want random or record", o.mode)}
	case o.template != "" && o.textColumn != "":
		// The template renders the whole row; the column would be ignored.
		return calibrate.Options{}, usageError{fmt.Errorf("--template renders whole rows and --text-column names the one column to read: choose one (e.g. --template '{%s}')", o.textColumn)}
	}
	switch o.format {
	case "", calibrate.FormatParquet, calibrate.FormatJSON, calibrate.FormatJSONL, calibrate.FormatText, calibrate.FormatParagraphs:
	default:
		return calibrate.Options{}, usageError{fmt.Errorf("--dataset-format %q: want parquet, json, jsonl, text or paragraphs (or leave it out: by extension)", o.format)}
	}
	cfg, err := hfconfig.Load(modelDir)
	if err != nil {
		return calibrate.Options{}, err
	}
	if o.seqLen > cfg.MaxPositionEmbeddings && cfg.MaxPositionEmbeddings > 0 {
		return calibrate.Options{}, usageError{fmt.Errorf("--seq-len %d exceeds the model's %s", o.seqLen, cfg.ContextLimit())}
	}
	tok, err := tokenizer.Load(modelDir)
	if err != nil {
		return calibrate.Options{}, err
	}
	if err := tokenizerFits(modelDir, tok, cfg); err != nil {
		return calibrate.Options{}, err
	}
	return calibrate.Options{
		Paths:        o.datasets,
		Format:       o.format,
		TextColumn:   o.textColumn,
		Template:     o.template,
		Chat:         tokenizer.ChatOptions{Template: o.chatTemplate, SystemMessages: o.systemMessages},
		NSamples:     o.nsamples,
		SeqLen:       o.seqLen,
		Seed:         o.seed,
		Mode:         o.mode,
		MaxPositions: cfg.MaxPositionEmbeddings,
		Tokenizer:    tok,
		Log:          log,
	}, nil
}

// calibrateReport is the --json document and the head of the --out file.
type calibrateReport struct {
	Datasets  []string        `json:"datasets"`
	Mode      string          `json:"mode"`
	SeqLen    int             `json:"seq_len"`
	NSamples  int             `json:"nsamples"`
	Seed      int64           `json:"seed"`
	Rendering string          `json:"rendering"`
	Stats     calibrate.Stats `json:"stats"`
}

// samplesFile is the --out document: input_ids and attention_mask per
// sample, as transformers names them (mask 1 = real token, 0 = padding).
type samplesFile struct {
	calibrateReport
	Samples []sampleJSON `json:"samples"`
}

type sampleJSON struct {
	InputIDs      []int `json:"input_ids"`
	AttentionMask []int `json:"attention_mask"`
}

func newCalibrateCmd() *cobra.Command {
	var (
		cf       calibrationFlags
		model    string
		jsonOut  bool
		out      string
		force    bool
		cmdUsage = "calibrate --model DIR --dataset PATH... [--nsamples N] [--seq-len N] [--seed N] [--mode random|record] [--text-column C] [--template T] [--json] [--out samples.json [--force]]"
	)
	cmd := &cobra.Command{
		Use:   cmdUsage,
		Short: "Preview the calibration samples GPTQ would use",
		Long: `calibrate reads a calibration dataset (parquet, JSON, JSONL, text; files,
directories or globs), renders its rows as the model was trained (instruction
rows and conversations in the tokenizer's chat template, BOS per record),
tokenizes them and cuts --nsamples samples of --seq-len tokens, exactly as
quantize does with the same flags. It prints what was read; --out writes the
samples as JSON (input_ids, attention_mask), to a file that does not exist
yet unless --force.

Modes: random (default) takes windows over the concatenated token stream at
offsets drawn as IST-DASLab GPTQ does (Python random.seed(seed);
randint(0, len-seq_len-1)); record makes one sample per record, truncated or
padded at the end with attention_mask 0.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usageError{fmt.Errorf("calibrate: unexpected arguments %q (datasets go in --dataset)", args)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := cf.options(model, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if out != "" {
				if err := checkSamplesOut(out, force); err != nil {
					return err
				}
			}
			ds, err := loadDataset(opts)
			if err != nil {
				return err
			}
			rep := calibrateReport{Datasets: cf.datasets, Mode: ds.Mode, SeqLen: ds.SeqLen, NSamples: len(ds.Samples),
				Seed: ds.Seed, Rendering: ds.Rendering, Stats: ds.Stats}
			if out != "" {
				if err := writeSamples(out, rep, ds.Samples); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			if jsonOut {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			st := ds.Stats
			fmt.Fprintf(w, "files      %d\nrecords    %d (%d without text)\nrendering  %s\ntokens     %d\nsamples    %d × %d tokens (%s, seed %d)\ntruncated  %d records\npadded     %d samples\nrepeated   %v\n",
				st.Files, st.Records, st.Skipped, ds.Rendering, st.Tokens, st.Samples, ds.SeqLen, ds.Mode, ds.Seed, st.Truncated, st.Padded, st.Repeated)
			if out != "" {
				fmt.Fprintf(w, "written    %s\n", out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "model directory (tokenizer files and config.json)")
	addCalibrationFlags(f, &cf)
	f.BoolVar(&jsonOut, "json", false, "print the summary as one JSON document")
	f.StringVar(&out, "out", "", "write the samples to this JSON file")
	f.BoolVar(&force, "force", false, "replace --out if it exists")
	return cmd
}

// checkSamplesOut refuses, before the dataset is read, an --out that
// writeSamples could not write: in a directory that does not exist or
// under a file, or a directory itself; and, unless force, one that exists,
// as the other commands' --out (it may be the dataset itself, or a file of
// the model's).
func checkSamplesOut(path string, force bool) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("calibrate: --out %s is a directory: give a file name", path)
	} else if err == nil && !force {
		return fmt.Errorf("calibrate: --out %s exists (use --force to replace it)", path)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err != nil && underFile(dir):
		return fmt.Errorf("calibrate: --out %s: %s lies under a file, not in a directory", path, dir)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("calibrate: --out %s: directory %s does not exist", path, dir)
	case err != nil:
		return fmt.Errorf("calibrate: --out %s: %w", path, err)
	case !fi.IsDir():
		return fmt.Errorf("calibrate: --out %s: %s is a file, not a directory", path, dir)
	}
	return nil
}

// underFile reports whether the nearest existing parent of dir, which
// cannot be read, is a file: unix says ENOTDIR for a path under a file,
// Windows that it does not exist.
func underFile(dir string) bool {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil {
			return !fi.IsDir()
		}
		if filepath.Dir(d) == d {
			return false
		}
	}
}

// writeSamples writes the samples file through a temporary file renamed
// into place, so that a failed run leaves no partial file.
func writeSamples(path string, rep calibrateReport, samples []calibrate.Sample) (err error) {
	doc := samplesFile{calibrateReport: rep, Samples: make([]sampleJSON, len(samples))}
	for i, s := range samples {
		mask := make([]int, len(s.IDs))
		for j := range mask {
			if s.Mask == nil || s.Mask[j] {
				mask[j] = 1
			}
		}
		doc.Samples[i] = sampleJSON{InputIDs: s.IDs, AttentionMask: mask}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("calibrate: --out: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("calibrate: write %s: %w", tmp.Name(), err)
	}
	if err := json.NewEncoder(tmp).Encode(doc); err != nil {
		return fmt.Errorf("calibrate: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("calibrate: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	return nil
}

// loadDataset is calibrate.Load, its errors naming the flags that fix them.
func loadDataset(opts calibrate.Options) (*calibrate.Dataset, error) {
	ds, err := calibrate.Load(opts)
	if errors.Is(err, calibrate.ErrNoTextColumn) {
		return nil, fmt.Errorf("%w: pass --text-column COLUMN or --template 'TEXT {column}'", err)
	}
	return ds, err
}
