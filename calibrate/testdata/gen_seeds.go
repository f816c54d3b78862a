//go:build ignore

// gen_seeds writes the small dataset files of this directory, the seeds of
// the dataset reader fuzzers and the inputs of the reader tests: a sample
// of the shared alpaca_en_demo fixture as JSON, JSONL and parquet, the
// first lines of wikitext-2 wiki.test.raw, and a nested parquet file. Run
// it from the calibrate directory:
//
//	go run testdata/gen_seeds.go
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/parquet-go/parquet-go"
)

const fixtures = "../../shared/fixtures/datasets"

// alpacaRows are the fixture records sampled: short ones, with and without
// an input.
var alpacaRows = []int{1, 3, 5, 8, 10, 16}

// alpaca is a fixture record; in parquet its columns are optional strings,
// as in the fixture, and parquet-go writes an empty input as null.
type alpaca struct {
	Instruction string `json:"instruction" parquet:"instruction,optional"`
	Input       string `json:"input" parquet:"input,optional"`
	Output      string `json:"output" parquet:"output,optional"`
}

type turn struct {
	From  string `parquet:"from"`
	Value string `parquet:"value"`
}

type meta struct {
	Lang string `parquet:"lang"`
}

type nested struct {
	ID            int64    `parquet:"id"`
	Text          string   `parquet:"text,dict"`
	Conversations []turn   `parquet:"conversations,list"`
	Tags          []string `parquet:"tags,list"`
	Meta          meta     `parquet:"meta"`
	Note          *string  `parquet:"note,optional"`
}

func main() {
	data, err := os.ReadFile(fixtures + "/instruct/alpaca_en_demo.json")
	if err != nil {
		log.Fatal(err)
	}
	var all []alpaca
	if err := json.Unmarshal(data, &all); err != nil {
		log.Fatal(err)
	}
	var rows []alpaca
	for _, i := range alpacaRows {
		rows = append(rows, all[i])
	}
	js, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	write("alpaca_sample.json", append(js, '\n'))
	var jl bytes.Buffer
	for _, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			log.Fatal(err)
		}
		jl.Write(append(b, '\n'))
	}
	write("alpaca_sample.jsonl", jl.Bytes())
	write("alpaca_sample.parquet", parquetOf(rows, 4, parquet.Compression(&parquet.Snappy)))

	note := "a note"
	nest := []nested{
		{ID: 0, Text: "first row", Conversations: []turn{{"human", "Hello"}, {"gpt", "Hi"}}, Tags: []string{"a", "b"}, Meta: meta{"en"}, Note: &note},
		{ID: 1, Text: "second row", Conversations: []turn{{"human", "Bonjour"}}, Tags: nil, Meta: meta{"fr"}},
		{ID: 2, Text: "first row", Conversations: nil, Tags: []string{"c"}, Meta: meta{""}, Note: &note},
	}
	write("nested_sample.parquet", parquetOf(nest, 2, parquet.Compression(&parquet.Zstd), parquet.DataPageVersion(1)))

	wiki, err := os.ReadFile(fixtures + "/wikitext-2-raw/wiki.test.raw")
	if err != nil {
		log.Fatal(err)
	}
	lines := strings.SplitAfter(string(wiki), "\n")
	var sample strings.Builder
	for _, l := range lines[:12] {
		if len(l) > 400 { // keep the seed small: cut long lines at a word
			l = l[:strings.LastIndex(l[:400], " ")] + " \n"
		}
		sample.WriteString(l)
	}
	write("wiki_sample.txt", []byte(sample.String()))
}

// parquetOf writes rows, perGroup rows to a row group.
func parquetOf[T any](rows []T, perGroup int, opts ...parquet.WriterOption) []byte {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf, opts...)
	for i := 0; i < len(rows); i += perGroup {
		if _, err := w.Write(rows[i:min(i+perGroup, len(rows))]); err != nil {
			log.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	return buf.Bytes()
}

func write(name string, b []byte) {
	if err := os.WriteFile("testdata/"+name, b, 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("testdata/%s: %d bytes\n", name, len(b))
}
