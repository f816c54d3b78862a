package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/runtime/grammar"
	"github.com/gptqtool/gptqtool/runtime/sample"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newGenerateCmd) }

// generateOptions holds the flags of the generate command.
type generateOptions struct {
	model       string
	prompt      string
	maxTokens   int
	temperature float64
	topP        float64
	topK        int
	seed        uint64
	chat        bool
	template    string
	json        bool
	jsonSchema  string
	jsonObject  bool
	regex       string
	speculate   int
	ids         bool
	device      string
	dtype       string
	threads     int
}

func newGenerateCmd() *cobra.Command {
	var o generateOptions
	cmd := &cobra.Command{
		Use:   "generate --model DIR --prompt TEXT|- [--max-tokens N] [--temperature T]",
		Short: "Generate text from a prompt with the gptqtool runtime",
		Long: `generate loads a floating-point or GPTQ checkpoint and its tokenizer, encodes
the prompt (BOS in front when the tokenizer adds it and special tokens such as
<|end_of_turn|> in the text matched, as serve's completions and Hugging Face
tokenizers encode a prompt; with --chat, as one user turn of the model's chat
template followed by the assistant prompt) and
samples up to --max-tokens tokens, stopping at an EOS id of config.json or
generation_config.json. Temperature 0 is greedy (argmax, lowest id on ties).
--json-schema FILE (or --json-object) constrains the output to JSON of that
schema, as serve's response_format does; --regex PATTERN to a text the
regular expression (RE2's syntax) matches whole, as serve's guided_regex.

The text streams to standard output as it is generated; speed goes to
standard error. --ids prints the prompt and generated ids instead, --json one
JSON document with both and the text.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGenerate(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model directory, or a GGUF file with the tokenizer files beside it (required)")
	f.StringVar(&o.prompt, "prompt", "", "prompt text, - for standard input (its one final newline, \\n or \\r\\n, dropped, as tokenize - drops it) (required)")
	f.IntVar(&o.maxTokens, "max-tokens", 128, "most tokens to generate")
	f.Float64Var(&o.temperature, "temperature", 0, "sampling temperature; 0 is greedy")
	f.Float64Var(&o.topP, "top-p", 1, "nucleus sampling: keep the most likely tokens up to this probability")
	f.IntVar(&o.topK, "top-k", 0, "keep only the K most likely tokens (0 or -1 = all, as serve's top_k)")
	f.Uint64Var(&o.seed, "seed", 0, "random seed for sampling (default: a fresh one each run, reported on stderr and in --json)")
	f.BoolVar(&o.chat, "chat", false, "wrap the prompt in the model's chat template as a user turn")
	f.StringVar(&o.template, "chat-template", "", "chat template for --chat: openchat or openchat-math (default: tokenizer_config.json's chat_template; setting it implies --chat)")
	f.BoolVar(&o.json, "json", false, "print one JSON document with ids, text and speed")
	f.StringVar(&o.jsonSchema, "json-schema", "", "constrain the output to JSON valid against the JSON Schema in this file (structured output, as serve's response_format)")
	f.BoolVar(&o.jsonObject, "json-object", false, "constrain the output to a JSON object (as serve's response_format json_object)")
	f.StringVar(&o.regex, "regex", "", "constrain the output to a text this regular expression (RE2 syntax) matches whole (as serve's guided_regex)")
	f.IntVar(&o.speculate, "speculate", 0, "speculative decoding by prompt lookup, as serve's --speculate: up to this many draft tokens a step, copied from where the last 4..2 tokens occurred before, kept where the model's draws confirm them (the same output in fewer steps where text repeats); 0: off")
	f.BoolVar(&o.ids, "ids", false, "print the prompt and generated token ids, space separated")
	f.StringVar(&o.device, "device", "auto", deviceHelp)
	f.StringVar(&o.dtype, "dtype", "auto", dtypeHelp)
	f.IntVar(&o.threads, "threads", 0, "CPU threads (0 = all cores)")
	_ = cmd.MarkFlagRequired("model")
	_ = cmd.MarkFlagRequired("prompt")
	return cmd
}

// generateJSON is the --json document.
type generateJSON struct {
	Model           string  `json:"model"`
	PromptIDs       []int   `json:"prompt_ids"`
	IDs             []int   `json:"ids"`
	Text            string  `json:"text"`
	StopReason      string  `json:"stop_reason"`
	PromptTokens    int     `json:"prompt_tokens"`
	GeneratedTokens int     `json:"generated_tokens"`
	PrefillTokPerS  float64 `json:"prefill_tokens_per_second"`
	DecodeTokPerS   float64 `json:"decode_tokens_per_second"`
	Device          string  `json:"device"`
	Seed            *uint64 `json:"seed"`
	// (With --speculate: the draft tokens fed and those that held.)
	DraftTokens    *int `json:"draft_tokens,omitempty"`
	AcceptedTokens *int `json:"accepted_tokens,omitempty"`
}

func runGenerate(cmd *cobra.Command, o generateOptions) error {
	switch {
	case o.maxTokens <= 0:
		return usageError{fmt.Errorf("generate: --max-tokens %d: want > 0", o.maxTokens)}
	case !(o.temperature >= 0) || math.IsInf(o.temperature, 0): // NaN fails every comparison
		return usageError{fmt.Errorf("generate: --temperature %v: want a finite value >= 0 (0 is greedy)", o.temperature)}
	case o.topK < -1:
		return usageError{fmt.Errorf("generate: --top-k %d: want >= 0 (0 or -1: all)", o.topK)}
	case !(o.topP > 0 && o.topP <= 1):
		return usageError{fmt.Errorf("generate: --top-p %v: want in (0, 1]", o.topP)}
	case o.json && o.ids:
		return usageError{errors.New("generate: --json and --ids exclude each other")}
	case btoi(o.jsonSchema != "")+btoi(o.jsonObject)+btoi(cmd.Flags().Changed("regex")) > 1:
		return usageError{errors.New("generate: --json-schema, --json-object and --regex exclude each other")}
	case cmd.Flags().Changed("regex") && o.regex == "":
		return usageError{errors.New("generate: --regex: want a non-empty regular expression")}
	case o.speculate < 0:
		return usageError{fmt.Errorf("generate: --speculate %d: want 0 (off) or more draft tokens", o.speculate)}
	}
	if !cmd.Flags().Changed("seed") {
		// As the server draws one for a request without a seed: runs
		// without --seed are independent samples, not all seed 0's.
		o.seed = rand.Uint64()
	}
	prompt := o.prompt
	if prompt == "-" {
		var err error
		if prompt, err = readStdinText(cmd.InOrStdin(), "generate"); err != nil {
			return err
		}
	}
	tok, err := loadModelTokenizer(o.model)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	var promptIDs []int
	if o.chat || o.template != "" {
		promptIDs, err = tok.EncodeChat([]tokenizer.Message{{Role: "user", Content: prompt}},
			tokenizer.ChatOptions{Template: o.template, AddGenerationPrompt: true})
	} else {
		// As serve's completions and a Hugging Face tokenizer with
		// add_special_tokens: a raw template's <|end_of_turn|> is the token.
		promptIDs, err = tok.EncodeSpecialPrompt(prompt)
	}
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	if len(promptIDs) == 0 {
		return usageError{errors.New("generate: the prompt encodes to no tokens")}
	}
	var matcher sample.Matcher
	if o.jsonSchema != "" || o.jsonObject || o.regex != "" {
		schema := []byte(grammar.AnyObject)
		if o.jsonSchema != "" {
			if schema, err = os.ReadFile(o.jsonSchema); err != nil {
				return fmt.Errorf("generate: --json-schema: %w", err)
			}
		}
		v := grammar.NewVocab(tok)
		var g *grammar.Grammar
		if o.regex != "" {
			if g, err = grammar.Regex(o.regex, v); err != nil {
				return usageError{fmt.Errorf("generate: --regex: %w", err)}
			}
		} else if g, err = grammar.Compile(schema, v); err != nil {
			return fmt.Errorf("generate: --json-schema %s: %w", o.jsonSchema, err)
		}
		matcher = g.NewMatcher()
	}
	b, err := newBackend(o.device, o.threads, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer closeBackend(b)
	stderr := cmd.ErrOrStderr()
	loadStart := time.Now()
	// The context is what this run fills: the prompt and --max-tokens
	// (max_position_embeddings at most, where generation stops anyway),
	// as transformers' generate of this prompt chooses Phi-3's longrope
	// factors by it.
	m, err := loadModel(o.model, b, o.dtype, generateContext(o.model, len(promptIDs), o.maxTokens))
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	defer m.Close()
	fmt.Fprintf(stderr, "loaded %s on %s in %.2fs\n", o.model, b.Name(), time.Since(loadStart).Seconds())
	// sample.Generate stops at the context's end; say so up front rather
	// than let a run end at "length" short of --max-tokens unexplained.
	if ctx := m.Context(); ctx > len(promptIDs) && len(promptIDs)+o.maxTokens > ctx {
		fmt.Fprintf(stderr, "generate: warning: --max-tokens %d with a prompt of %d tokens passes the context of %d (max_position_embeddings): at most %d new tokens\n",
			o.maxTokens, len(promptIDs), ctx, ctx-len(promptIDs))
	}

	stop := slices.Clone(m.EOSTokenIDs)
	if e := tok.EOS(); e >= 0 && !slices.Contains(stop, e) {
		stop = append(stop, e)
	}
	out := cmd.OutOrStdout()
	dec := tok.NewDecoder()
	if !o.chat && o.template == "" {
		// The text continues the prompt's, as the server's completions
		// do: a first token's leading space is kept, so prompt + text
		// reads as the whole. A chat answer starts a text of its own.
		for _, id := range promptIDs {
			if _, err := dec.Add(id); err != nil {
				return fmt.Errorf("generate: decode prompt id %d: %w", id, err)
			}
		}
		dec.Flush()
	} else if o.regex != "" {
		// The regex's text is the answer byte for byte, a leading
		// space too (as serve's guided_regex).
		dec.Continue()
	}
	var text strings.Builder
	stream := !o.json && !o.ids
	res, err := sample.Generate(m, promptIDs, sample.GenerateOptions{
		MaxTokens: o.maxTokens,
		StopIDs:   stop,
		Sampling:  sample.Options{Temperature: o.temperature, TopK: o.topK, TopP: o.topP, Seed: o.seed},
		Grammar:   matcher,
		Speculate: o.speculate,
	}, func(id int) error {
		s, err := generatedText(tok, dec, id)
		if err != nil {
			return err
		}
		text.WriteString(s)
		if stream {
			if _, err := io.WriteString(out, s); err != nil {
				return fmt.Errorf("generate: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	tail := dec.Flush()
	text.WriteString(tail)

	prefill := float64(len(promptIDs)) / max(res.Prefill.Seconds(), 1e-9)
	decodeSteps := max(len(res.IDs)-1, 0)
	if res.Stopped {
		decodeSteps = len(res.IDs)
	}
	decode := 0.0
	if decodeSteps > 0 {
		decode = float64(decodeSteps) / max(res.Decode.Seconds(), 1e-9)
	}
	reason := "length"
	if res.Stopped {
		reason = "eos"
	}
	switch {
	case o.json:
		enc := json.NewEncoder(out)
		enc.SetIndent("", " ")
		doc := generateJSON{
			Model: o.model, PromptIDs: promptIDs, IDs: res.IDs, Text: text.String(), StopReason: reason,
			PromptTokens: len(promptIDs), GeneratedTokens: len(res.IDs),
			PrefillTokPerS: prefill, DecodeTokPerS: decode, Device: b.Name(), Seed: &o.seed,
		}
		if o.speculate > 0 {
			doc.DraftTokens, doc.AcceptedTokens = &res.Drafted, &res.Accepted
		}
		if err := enc.Encode(doc); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	case o.ids:
		all := append(slices.Clone(promptIDs), res.IDs...)
		strs := make([]string, len(all))
		for i, id := range all {
			strs[i] = strconv.Itoa(id)
		}
		if _, err := fmt.Fprintln(out, strings.Join(strs, " ")); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	default:
		if _, err := fmt.Fprintln(out, tail); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	}
	seed := ""
	if o.temperature > 0 && o.topK != 1 {
		seed = fmt.Sprintf("; seed %d", o.seed)
	}
	if o.speculate > 0 {
		seed += fmt.Sprintf("; drafts: %d tokens fed, %d held", res.Drafted, res.Accepted)
	}
	fmt.Fprintf(stderr, "prompt %d tokens, %.1f tok/s; generated %d tokens (%s), %.1f tok/s%s\n",
		len(promptIDs), prefill, len(res.IDs), reason, decode, seed)
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// generatedText is the text a generated id adds: none for a special token
// (a BOS, an end of turn that is not a stop id, <|pad_0|>), as serve leaves
// them out of a completion's text (vLLM's skip_special_tokens).
func generatedText(tok *tokenizer.Tokenizer, dec *tokenizer.Decoder, id int) (string, error) {
	if tok.IsSpecial(id) {
		return "", nil
	}
	s, err := dec.Add(id)
	if err != nil {
		return "", fmt.Errorf("generate: decode id %d: %w", id, err)
	}
	return s, nil
}

// generateContext is the context generate loads the checkpoint at path
// for: prompt + maxTokens positions, capped at its max_position_embeddings
// (0, the model's own, where the config does not load here: the load
// reports why).
func generateContext(path string, prompt, maxTokens int) int {
	cfg, err := modelConfig(path)
	if err != nil {
		return 0
	}
	n := prompt + maxTokens
	if max := cfg.MaxPositionEmbeddings; max > 0 && (n > max || n <= 0) {
		return max
	}
	return n
}
