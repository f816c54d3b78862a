package calibrate

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/parquet-go/parquet-go"
)

// Sampling modes of Options.Mode.
const (
	ModeRandom = "random" // random windows over the token stream (default)
	ModeRecord = "record" // one record per sample, truncated or padded
)

// Defaults applied by Load.
const (
	DefaultNSamples = 128
	DefaultSeqLen   = 4096 // capped at the model's context
)

// ErrEmptyDataset is returned (wrapped) when the dataset holds no record
// with text to calibrate on.
var ErrEmptyDataset = errors.New("dataset is empty")

// ErrNoTextColumn is returned (wrapped) when no column of the dataset is
// known to hold text and the options name none (Options.TextColumn,
// Options.Template).
var ErrNoTextColumn = errors.New("no text to calibrate on")

// Options selects the data, how rows become text and how samples are cut.
type Options struct {
	// Paths are files, directories and globs read as one dataset (see
	// ResolvePaths). A Hub dataset name gives an error wrapping ErrHubDataset.
	Paths []string
	// Format forces the format of every file: parquet, json, jsonl, text
	// (whole file one record) or paragraphs (text split on blank lines);
	// "" chooses by extension (.parquet .json .jsonl; anything else text).
	Format string
	// TextColumn is the column (dotted path) of plain corpora. "" chooses:
	// a conversations/messages list, then instruction rows, then "text".
	TextColumn string
	// Template is a row template over column names, e.g.
	// "### Question:\n{question}\n### Answer:\n{answer}" (see parseTemplate).
	// It wins over TextColumn.
	Template string
	// Chat is passed to the tokenizer for rows rendered as chat turns.
	Chat tokenizer.ChatOptions
	// NSamples is the number of samples (0 = DefaultNSamples).
	NSamples int
	// SeqLen is the tokens per sample (0 = min(DefaultSeqLen, MaxPositions)).
	SeqLen int
	// Seed seeds the Python-compatible generator (random.seed(Seed)).
	Seed int64
	// Mode is ModeRandom ("" too) or ModeRecord.
	Mode string
	// MaxPositions is the model's context (max_position_embeddings); 0 means
	// unknown and lets any SeqLen through.
	MaxPositions int
	// Tokenizer encodes the records; required.
	Tokenizer *tokenizer.Tokenizer
	// Log receives the summary and warnings (nil = discard).
	Log io.Writer
}

// Sample is one calibration sequence of exactly SeqLen tokens.
type Sample struct {
	// IDs are token ids, [SeqLen].
	IDs []int
	// Mask marks real tokens (true) and padding (false), [SeqLen]; nil when
	// every token is real. Padding is always at the end.
	Mask []bool
}

// Stats counts what Load read and produced.
type Stats struct {
	Files   int `json:"files"`
	Records int `json:"records"`
	// Skipped counts records with no text (null or empty columns).
	Skipped int `json:"skipped"`
	// Tokens is the number of tokens encoded: the whole stream in random
	// mode, the selected records in record mode (before truncation).
	Tokens  int `json:"tokens"`
	Samples int `json:"samples"`
	// Truncated counts record-mode samples cut to SeqLen.
	Truncated int `json:"truncated"`
	// Padded counts record-mode samples padded to SeqLen.
	Padded int `json:"padded"`
	// Repeated is set when the data held less than NSamples×SeqLen tokens
	// (random mode) or fewer than NSamples records (record mode), so that
	// samples share tokens by necessity; a warning was logged.
	Repeated bool `json:"repeated"`
}

// Dataset is the calibration set: the samples and how they were made.
type Dataset struct {
	Samples []Sample
	Stats   Stats
	// SeqLen, Mode and Seed are the values used, defaults applied.
	SeqLen int
	Mode   string
	Seed   int64
	// Rendering says how records became text, e.g. "chat template over
	// instruction/input/output" or "column text".
	Rendering string
}

// Load reads the dataset, renders and tokenizes its records and cuts the
// samples. The result depends only on the files, the options and the
// tokenizer: the same inputs give the same samples on every machine.
func Load(opts Options) (*Dataset, error) {
	if err := resolve(&opts); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	files, err := ResolvePaths(opts.Paths)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	var recs []Record
	schemas := map[string]*parquet.Schema{}
	for _, f := range files {
		r, schema, err := readFile(f, opts.Format)
		if err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		if schema != nil {
			schemas[f] = schema
		}
		recs = append(recs, r...)
	}
	where := strings.Join(files, ", ")
	if len(files) > 3 {
		where = fmt.Sprintf("%s, … (%d files)", files[0], len(files))
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("calibrate: %s: no records: %w", where, ErrEmptyDataset)
	}
	rd, err := newRenderer(opts, Columns(recs))
	if err != nil {
		return nil, fmt.Errorf("calibrate: %s: %w", where, err)
	}
	for _, f := range files {
		if s := schemas[f]; s != nil {
			if err := checkParquetText(f, s, rd.cols); err != nil {
				return nil, fmt.Errorf("calibrate: %w", err)
			}
		}
	}
	if err := checkText(recs, rd); err != nil {
		if errors.Is(err, ErrEmptyDataset) {
			return nil, fmt.Errorf("calibrate: %s: %w", where, err)
		}
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	ds := &Dataset{SeqLen: opts.SeqLen, Mode: opts.Mode, Seed: opts.Seed, Rendering: rd.kind}
	ds.Stats.Files, ds.Stats.Records = len(files), len(recs)
	enc := encoder{tok: opts.Tokenizer, chat: opts.Chat, r: rd}
	if opts.Mode == ModeRecord {
		err = recordSamples(ds, recs, enc, opts, log)
	} else {
		err = randomSamples(ds, recs, enc, opts, log)
	}
	if err != nil {
		if errors.Is(err, ErrEmptyDataset) {
			return nil, fmt.Errorf("calibrate: %s: %w", where, err)
		}
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	st := ds.Stats
	fmt.Fprintf(log, "calibrate: read %d records (%d without text) from %d file(s), rendered by %s; %d tokens\n",
		st.Records, st.Skipped, st.Files, rd.kind, st.Tokens)
	fmt.Fprintf(log, "calibrate: %d samples × %d tokens (%s mode, seed %d); %d records truncated, %d samples padded\n",
		st.Samples, ds.SeqLen, ds.Mode, ds.Seed, st.Truncated, st.Padded)
	return ds, nil
}

// resolve validates opts and applies the defaults.
func resolve(o *Options) error {
	if o.Tokenizer == nil {
		return errors.New("calibrate: no tokenizer")
	}
	switch o.Mode {
	case "":
		o.Mode = ModeRandom
	case ModeRandom, ModeRecord:
	default:
		return fmt.Errorf("calibrate: mode %q: want %q or %q", o.Mode, ModeRandom, ModeRecord)
	}
	switch {
	case o.NSamples == 0:
		o.NSamples = DefaultNSamples
	case o.NSamples < 0:
		return fmt.Errorf("calibrate: nsamples %d: want a positive number", o.NSamples)
	}
	if o.MaxPositions < 0 {
		return fmt.Errorf("calibrate: max positions %d: want a positive number (0 = unknown)", o.MaxPositions)
	}
	switch {
	case o.SeqLen == 0:
		o.SeqLen = DefaultSeqLen
		if o.MaxPositions > 0 {
			o.SeqLen = min(o.SeqLen, o.MaxPositions)
		}
	case o.SeqLen < 0:
		return fmt.Errorf("calibrate: seq-len %d: want a positive number", o.SeqLen)
	case o.MaxPositions > 0 && o.SeqLen > o.MaxPositions:
		return fmt.Errorf("calibrate: seq-len %d exceeds the model's context of %d positions (max_position_embeddings)", o.SeqLen, o.MaxPositions)
	}
	return nil
}

// checkText renders every record before any is encoded, so that a value
// that is not text is an error whichever records the sampling would reach,
// and a dataset with no text but whitespace is an error wrapping
// ErrEmptyDataset rather than calibration on whitespace. Records that are
// empty or whitespace only among others with text stay as they are.
func checkText(recs []Record, rd renderer) error {
	hasText := false
	for _, r := range recs {
		out, skip, err := rd.fn(r)
		if err != nil {
			return err
		}
		hasText = hasText || (!skip && !out.blank)
	}
	if !hasText {
		if len(recs) == 1 {
			return fmt.Errorf("no text: 1 record, with no text other than whitespace: %w", ErrEmptyDataset)
		}
		return fmt.Errorf("no text: %d records, none with text other than whitespace: %w", len(recs), ErrEmptyDataset)
	}
	return nil
}

// encoder renders and tokenizes records.
type encoder struct {
	tok  *tokenizer.Tokenizer
	chat tokenizer.ChatOptions
	r    renderer
}

// encode returns the tokens of one record: the chat template's own (BOS
// included as the template puts it), or BOS (when the tokenizer adds one)
// followed by the text. skip reports a record without text.
func (e encoder) encode(rec Record) (ids []int, skip bool, err error) {
	out, skip, err := e.r.fn(rec)
	if err != nil || skip {
		return nil, skip, err
	}
	if out.msgs != nil {
		ids, err = e.tok.EncodeChat(out.msgs, e.chat)
	} else {
		var body []int
		if out.special {
			body, err = e.tok.EncodeSpecial(out.text)
		} else {
			body, err = e.tok.Encode(out.text)
		}
		if e.tok.AddBOS() {
			ids = append(ids, e.tok.BOS())
		}
		ids = append(ids, body...)
	}
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", rec.where(), err)
	}
	return ids, len(ids) == 0, nil
}

// encodeAll encodes every record on GOMAXPROCS goroutines (the tokenizer is
// safe for concurrent use); a record without text gives nil. The result and
// the error returned (that of the first failing record) do not depend on
// scheduling.
func (e encoder) encodeAll(recs []Record) ([][]int, error) {
	out := make([][]int, len(recs))
	errs := make([]error, len(recs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(recs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(recs) {
					return
				}
				ids, skip, err := e.encode(recs[i])
				if err != nil {
					errs[i] = err
					next.Store(int64(len(recs))) // stop the others early
					return
				}
				if !skip {
					out[i] = ids
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// randomSamples concatenates every record into one token stream and takes
// NSamples windows exactly as IST-DASLab gptq datautils does:
// random.seed(seed); i = random.randint(0, len(stream)-seqlen-1);
// window = stream[i:i+seqlen].
func randomSamples(ds *Dataset, recs []Record, enc encoder, opts Options, log io.Writer) error {
	encoded, err := enc.encodeAll(recs)
	if err != nil {
		return err
	}
	var stream []int
	for _, ids := range encoded {
		if ids == nil {
			ds.Stats.Skipped++
			continue
		}
		stream = append(stream, ids...)
	}
	ds.Stats.Tokens = len(stream)
	if len(stream) == 0 {
		return fmt.Errorf("%d records, none with text: %w", len(recs), ErrEmptyDataset)
	}
	n, seqLen := opts.NSamples, opts.SeqLen
	if need := n * seqLen; len(stream) < need {
		ds.Stats.Repeated = true
		fmt.Fprintf(log, "calibrate: warning: the dataset has %d tokens, fewer than nsamples × seq-len = %d × %d = %d: windows overlap and tokens repeat across samples; pass more data for a better calibration\n",
			len(stream), n, seqLen, need)
	}
	if len(stream) <= seqLen {
		// One window needs seqLen+1 tokens (randint's upper bound is
		// len-seqlen-1): repeat the whole stream until it fits.
		base := stream
		for len(stream) <= seqLen {
			stream = append(stream, base...)
		}
		fmt.Fprintf(log, "calibrate: warning: the dataset (%d tokens) is shorter than one sample of %d tokens: the token stream is repeated %d times\n",
			len(base), seqLen, len(stream)/len(base))
	}
	ds.Samples = make([]Sample, n)
	for s, i := range WindowStarts(len(stream), n, seqLen, opts.Seed) {
		ds.Samples[s].IDs = append([]int(nil), stream[i:i+seqLen]...)
	}
	ds.Stats.Samples = n
	return nil
}

// WindowStarts returns the start offsets of n windows of seqLen tokens over
// a stream of streamLen tokens, as IST-DASLab gptq datautils draws them:
// random.seed(seed), then random.randint(0, streamLen-seqLen-1) per window.
// It needs streamLen > seqLen > 0 and panics otherwise.
func WindowStarts(streamLen, n, seqLen int, seed int64) []int {
	if seqLen <= 0 || streamLen <= seqLen {
		panic("calibrate: WindowStarts: stream not longer than a window")
	}
	rng := NewPyRandom(seed)
	starts := make([]int, n)
	for s := range starts {
		starts[s] = rng.Randint(0, streamLen-seqLen-1)
	}
	return starts
}

// recordSamples makes one sample per record: records in the order of
// Python's random.seed(seed); random.shuffle(list(range(len(records)))),
// records without text passed over, cycling through the order again when
// fewer than NSamples records have text. Records longer than SeqLen keep
// their first SeqLen tokens; shorter ones are padded at the end with EOS
// ids (id 0 for a tokenizer without EOS) whose Mask is false.
func recordSamples(ds *Dataset, recs []Record, enc encoder, opts Options, log io.Writer) error {
	order := make([]int, len(recs))
	for i := range order {
		order[i] = i
	}
	NewPyRandom(opts.Seed).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	n, seqLen := opts.NSamples, opts.SeqLen
	cache := map[int][]int{} // encoded records, for the cycles after the first
	empty := map[int]bool{}
	for k := 0; len(ds.Samples) < n; k++ {
		if k == len(order) {
			if len(ds.Samples) == 0 {
				return fmt.Errorf("%d records, none with text: %w", len(recs), ErrEmptyDataset)
			}
			ds.Stats.Repeated = true
			fmt.Fprintf(log, "calibrate: warning: the dataset has %d records with text, fewer than nsamples = %d: records repeat across samples; pass more data for a better calibration\n",
				len(ds.Samples), n)
		}
		idx := order[k%len(order)]
		if empty[idx] {
			continue
		}
		ids, seen := cache[idx]
		if !seen {
			var skip bool
			var err error
			ids, skip, err = enc.encode(recs[idx])
			if err != nil {
				return err
			}
			if skip {
				empty[idx] = true
				ds.Stats.Skipped++
				continue
			}
			cache[idx] = ids
			ds.Stats.Tokens += len(ids)
		}
		s := Sample{IDs: make([]int, seqLen)}
		copy(s.IDs, ids)
		pad := max(enc.tok.EOS(), 0) // (masked: any id of the vocabulary)
		switch {
		case len(ids) > seqLen:
			ds.Stats.Truncated++
		case len(ids) < seqLen:
			ds.Stats.Padded++
			s.Mask = make([]bool, seqLen)
			for i := range s.IDs {
				if i < len(ids) {
					s.Mask[i] = true
				} else {
					s.IDs[i] = pad
				}
			}
		}
		ds.Samples = append(ds.Samples, s)
	}
	ds.Stats.Samples = len(ds.Samples)
	return nil
}
