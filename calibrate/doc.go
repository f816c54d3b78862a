// Package calibrate turns calibration datasets into reproducible token
// samples for GPTQ.
//
// Layers, bottom up:
//
//   - ResolvePaths expands files, directories and globs into files (sorted;
//     a directory holding parquet files contributes only those, as Hub
//     dataset repositories keep metadata JSON beside their parquet shards).
//     Hub dataset names (wikitext2, c4, open-instruct, owner/name) are an
//     error wrapping ErrHubDataset that says to download and pass files.
//   - ReadRecords/ReadFile read records: parquet (every row group, any codec
//     parquet-go reads: zstd, snappy, gzip, …; nested structs become
//     map[string]any, LIST columns []any), JSON arrays, JSONL, and text (a
//     whole file, or "paragraphs": documents split on blank lines). Text must
//     be valid UTF-8.
//   - Rendering: a row template, a text column (a dotted path such as
//     meta.text or conversations.value; parquet LIST levels list/element are
//     skipped), or by default: a conversations/messages list of {from,value}
//     or {role,content} turns, then instruction rows (instruction/prompt/
//     question with output/response/completion/answer; the user turn is the
//     instruction, then "\n" and the input when non-empty, as Alpaca does),
//     both through the tokenizer's chat template; then a "text" column. Chat
//     renderings carry BOS as the template puts it; text and template
//     renderings get BOS per record when the tokenizer adds one. Template
//     text is encoded with special tokens recognised, column text without.
//   - Sampling (Load): ModeRandom (default) concatenates all records into
//     one token stream and takes windows at the offsets IST-DASLab gptq
//     datautils draws (random.seed(seed); randint(0, len-seqlen-1)), through
//     PyRandom, a faithful port of CPython's Mersenne Twister. ModeRecord
//     takes one record per sample in Python random.shuffle order, truncated
//     to SeqLen or padded at the end (Mask false, id EOS).
//
// Invariants: every Sample has exactly SeqLen ids, and Mask is nil or of the
// same length with padding only at the end. The samples depend only on the
// file bytes, the options and the tokenizer: the same inputs and seed give
// the same samples on every machine (records are read in sorted file order,
// encoding runs in parallel but is collected in record order, map order is
// never observed). Too little data is not an error: with fewer than
// NSamples×SeqLen tokens (or fewer than NSamples records in record mode)
// samples share tokens, Stats.Repeated is set and a warning is logged; a
// stream shorter than one window is repeated whole. A dataset without a
// single record of text is an error wrapping ErrEmptyDataset.
package calibrate
