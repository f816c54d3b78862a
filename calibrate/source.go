package calibrate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Formats accepted in Options.Format and by ReadRecords.
const (
	FormatParquet    = "parquet"    // Apache Parquet, one record per row
	FormatJSON       = "json"       // a JSON array of objects (or of strings)
	FormatJSONL      = "jsonl"      // one JSON object (or string) per line
	FormatText       = "text"       // a whole file is one record {"text": …}
	FormatParagraphs = "paragraphs" // a text file split on blank lines, one record per document
)

// ErrHubDataset is returned (wrapped) when a dataset path names a Hugging Face
// Hub dataset instead of a local file: gptqtool has no Hub client yet.
var ErrHubDataset = errors.New("hub datasets cannot be downloaded by gptqtool")

// hubNames are the dataset names used by GPTQ tools (IST-DASLab datautils,
// AutoGPTQ, GPTQModel) and the Hub repositories behind them.
var hubNames = map[string]string{
	"wikitext2":     "Salesforce/wikitext, config wikitext-2-raw-v1",
	"wikitext":      "Salesforce/wikitext, config wikitext-2-raw-v1",
	"wikitext-2":    "Salesforce/wikitext, config wikitext-2-raw-v1",
	"ptb":           "ptb-text-only/ptb_text_only",
	"c4":            "allenai/c4",
	"c4-new":        "allenai/c4",
	"open-instruct": "VMware/open-instruct",
	"open_instruct": "VMware/open-instruct",
	"pileval":       "mit-han-lab/pile-val-backup",
}

// hubRepo matches "owner/name" as the Hub spells repository ids.
var hubRepo = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$`)

// dataExts are the extensions read from directories, by format.
var dataExts = map[string]string{
	".parquet": FormatParquet,
	".json":    FormatJSON,
	".jsonl":   FormatJSONL,
	".txt":     FormatText,
	".raw":     FormatText,
}

// dataExt returns the format of a file by its extension, looking through a
// trailing ".gz" (allenai/c4 ships en/c4-train.00000-of-01024.json.gz), or
// "" for an extension of no dataset format.
func dataExt(path string) string {
	p := strings.ToLower(path)
	if strings.HasSuffix(p, ".gz") {
		p = strings.TrimSuffix(p, ".gz")
		if filepath.Ext(p) == ".parquet" {
			return "" // parquet compresses its pages; it is read in place
		}
	}
	return dataExts[filepath.Ext(p)]
}

// ResolvePaths expands files, directories and glob patterns into a sorted,
// duplicate-free list of files, in the order the records are read: each
// argument in turn, the matches of a glob and the files of a directory
// sorted by name. A directory is walked recursively for files with the
// extensions .parquet, .json, .jsonl, .txt and .raw, the last four also
// gzip-compressed (.json.gz, …; hidden entries skipped); when it holds any .parquet file only those are taken, as the Hub
// stores a dataset's rows in parquet beside metadata JSON. A path that does
// not exist and names a Hub dataset (wikitext2, c4, open-instruct, or
// owner/name) gives an error wrapping ErrHubDataset.
func ResolvePaths(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, errors.New("no dataset given: pass a parquet, JSON, JSONL or text file, a directory or a glob")
	}
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range paths {
		if p == "" {
			return nil, errors.New("empty dataset path")
		}
		st, err := os.Stat(p)
		switch {
		case err == nil && st.IsDir():
			files, err := dirFiles(p)
			if err != nil {
				return nil, err
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("dataset directory %s: no .parquet, .json, .jsonl, .txt or .raw files (nor .json.gz, .jsonl.gz, .txt.gz)", p)
			}
			for _, f := range files {
				add(f)
			}
		case err == nil:
			add(p)
		case errors.Is(err, fs.ErrNotExist) && strings.ContainsAny(p, "*?["):
			matches, gerr := filepath.Glob(p)
			if gerr != nil {
				return nil, fmt.Errorf("dataset glob %q: %w", p, gerr)
			}
			sort.Strings(matches)
			n := 0
			hiddenOK := strings.HasPrefix(filepath.Base(p), ".")
			for _, m := range matches {
				if strings.HasPrefix(filepath.Base(m), ".") && !hiddenOK {
					continue // as the shell does
				}
				if st, err := os.Stat(m); err == nil && !st.IsDir() {
					add(m)
					n++
				}
			}
			if n == 0 {
				return nil, fmt.Errorf("dataset glob %q matches no files", p)
			}
		case errors.Is(err, fs.ErrNotExist):
			if herr := hubError(p); herr != nil {
				return nil, herr
			}
			return nil, fmt.Errorf("dataset %s: %w", p, err)
		default:
			return nil, fmt.Errorf("dataset %s: %w", p, err)
		}
	}
	return out, nil
}

// hubError returns the error for a missing path that looks like a Hub
// dataset name, or nil.
func hubError(p string) error {
	repo, known := hubNames[strings.ToLower(p)]
	if !known && (!hubRepo.MatchString(p) || dataExt(p) != "") {
		return nil
	}
	if !known {
		repo = p
	}
	return fmt.Errorf("dataset %q is a Hugging Face Hub dataset name (%s), not a local file: %w; download it first "+
		"(e.g. `huggingface-cli download --repo-type dataset %s --local-dir DIR`) and pass its parquet, JSON or "+
		"text files, or the directory holding them", p, repo, ErrHubDataset, strings.TrimSuffix(strings.Fields(repo)[0], ","))
}

// dirFiles lists the dataset files under dir, sorted by path.
func dirFiles(dir string) ([]string, error) {
	var all, pq []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch dataExt(path) {
		case "":
		case FormatParquet:
			pq = append(pq, path)
		default:
			all = append(all, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dataset directory %s: %w", dir, err)
	}
	if len(pq) > 0 {
		all = pq
	}
	sort.Strings(all)
	return all, nil
}

// formatOf returns the format of path: format when not empty, else by
// extension, looking through ".gz" (anything not parquet/json/jsonl is
// text).
func formatOf(path, format string) (string, error) {
	switch format {
	case FormatParquet, FormatJSON, FormatJSONL, FormatText, FormatParagraphs:
		return format, nil
	case "":
	default:
		return "", fmt.Errorf("dataset format %q: want one of parquet, json, jsonl, text, paragraphs (or empty for by extension)", format)
	}
	if f := dataExt(path); f != "" {
		return f, nil
	}
	if what, ok := unreadExts[strings.ToLower(filepath.Ext(path))]; ok {
		return "", fmt.Errorf("dataset %s: %s is not read: convert it to parquet, JSON, JSONL or text (gzip is read), "+
			"or pass --dataset-format text to read the file as plain text", path, what)
	}
	return FormatText, nil
}

// unreadExts are extensions of data formats that are not read: taken as
// text by default, a CSV would be calibrated on header and commas included,
// and a binary file refused as invalid UTF-8.
var unreadExts = map[string]string{
	".csv": "CSV", ".tsv": "TSV", ".arrow": "Arrow", ".feather": "Arrow", ".xlsx": "Excel",
	".zst": "zstd compression", ".bz2": "bzip2 compression", ".xz": "xz compression",
	".zip": "a zip archive", ".tar": "a tar archive", ".tgz": "a tar archive",
}
