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
//     whole file, or "paragraphs": documents split on blank lines). A .json
//     file of several objects one per line is JSON Lines, as the Hub's json
//     loader reads it; JSON, JSONL and text files may be gzip-compressed
//     (.json.gz, as allenai/c4 ships its shards). Other extensions are text,
//     but CSV, TSV, Arrow and other compressions are refused by name rather
//     than calibrated on as text. Text must be valid UTF-8. Parquet footers and page headers are checked before
//     parquet-go trusts them: they must lie inside the file, and the rows,
//     values and uncompressed bytes they claim are bounded in proportion to
//     the file's size, so that a small damaged file cannot make the reader
//     allocate gigabytes; every page is decoded once first to check that it
//     holds the values its levels count and that each column chunk holds
//     its row group's rows, so that a damaged file reads the same every
//     time.
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
//   - Types: every column read as text (text column, template placeholder,
//     instruction/input/output/system, turn role and content) must hold
//     strings. Null, and an optional column that is missing, are empty text
//     (a record holding none of the instruction rendering's columns has
//     another layout, e.g. a text file beside instruction rows, and is an
//     error naming it and its columns rather than dropped unseen);
//     a list of strings is its elements joined with newlines. A number,
//     boolean, object or other value is an error naming the file, the record
//     (0-based; JSONL also gives the line), the column, what was found and
//     that a string was wanted, e.g. `alpaca.json: record 3 (0-based), column
//     "instruction": number 123, want a string`. A parquet column read as
//     text must be a string column (BYTE_ARRAY, STRING or ENUM; a column of
//     the null type passes). Every record is checked before sampling, so the
//     error does not depend on which records the sampling would reach.
//   - Sampling (Load): ModeRandom (default) concatenates all records into
//     one token stream and takes windows at the offsets IST-DASLab gptq
//     datautils draws (random.seed(seed); randint(0, len-seqlen-1)), through
//     PyRandom, a faithful port of CPython's Mersenne Twister. ModeRecord
//     takes one record per sample in Python random.shuffle order, truncated
//     to SeqLen or padded at the end (Mask false, id EOS, or 0 without one).
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
// single record of text, one whose records are all null, empty or
// whitespace only included ("no text: …", naming the files), is an error
// wrapping ErrEmptyDataset; blank records among records with text are
// encoded as before.
package calibrate
