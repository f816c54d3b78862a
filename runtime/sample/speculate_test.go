package sample_test

import (
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/grammar"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/runtime/sample"
)

// TestGenerateSpeculate: Generate with drafts by prompt lookup
// (GenerateOptions.Speculate) gives the ids, streamed ids and stop of
// Generate without them, greedy and seeded sampling, under a JSON schema
// too, ended by max tokens or a stop id; drafts were fed and some held.
func TestGenerateSpeculate(t *testing.T) {
	dir := fixtures.Path(t, "models/stories260K-hf-mistral")
	prompt, greedy := fixtures.StoriesGreedy(t)
	m, err := model.Load(dir, cpu.NewPortable(2))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	v := grammar.NewVocab(tok)
	g, err := grammar.Compile([]byte(`{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string", "maxLength": 4}}, "required": ["a", "b"], "additionalProperties": false}`), v)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := tok.Encode(` {"a": 12, "b": "ab"} {"a": 7, "b": "ab"}`)
	if err != nil {
		t.Fatal(err)
	}
	// The prompt holds the greedy continuation once already.
	echo := append(slices.Clone(greedy), prompt...)
	stop := greedy[len(prompt)+5]
	cases := []struct {
		name   string
		prompt []int
		o      sample.GenerateOptions
	}{
		{"greedy", echo, sample.GenerateOptions{MaxTokens: 80}},
		{"stop id", echo, sample.GenerateOptions{MaxTokens: 80, StopIDs: []int{stop}}},
		{"seeded", echo, sample.GenerateOptions{MaxTokens: 60, Sampling: sample.Options{Temperature: 0.8, TopP: 0.9, Seed: 4}}},
		{"schema", append(slices.Clone(prompt), doc...), sample.GenerateOptions{MaxTokens: 40, StopIDs: []int{tok.EOS()}}},
	}
	var drafted, held int
	for _, c := range cases {
		run := func(k int) (*sample.Result, []int) {
			o := c.o
			o.Speculate = k
			if c.name == "schema" {
				o.Grammar = g.NewMatcher()
			}
			var streamed []int
			res, err := sample.Generate(m, c.prompt, o, func(id int) error { streamed = append(streamed, id); return nil })
			if err != nil {
				t.Fatalf("%s, drafts of %d: %v", c.name, k, err)
			}
			return res, streamed
		}
		want, _ := run(0)
		got, streamed := run(4)
		if !slices.Equal(got.IDs, want.IDs) || !slices.Equal(streamed, want.IDs) || got.Stopped != want.Stopped {
			t.Errorf("%s: with drafts %v (streamed %v, stopped %v), without %v (%v)", c.name, got.IDs, streamed, got.Stopped, want.IDs, want.Stopped)
		}
		if want.Drafted != 0 {
			t.Errorf("%s: %d draft tokens without Speculate", c.name, want.Drafted)
		}
		t.Logf("%s: %d ids, %d draft tokens fed, %d held", c.name, len(got.IDs), got.Drafted, got.Accepted)
		drafted, held = drafted+got.Drafted, held+got.Accepted
	}
	if held == 0 || held > drafted {
		t.Errorf("%d draft tokens fed, %d held", drafted, held)
	}
}
