package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/runtime/server"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newTokenizeCmd) }

// tokenizeOptions holds the flags of the tokenize command.
type tokenizeOptions struct {
	model       string
	chat        string
	noBOS       bool
	decode      bool
	special     bool
	json        bool
	template    string
	system      bool
	noGenPrompt bool
}

func newTokenizeCmd() *cobra.Command {
	var o tokenizeOptions
	cmd := &cobra.Command{
		Use:   "tokenize --model DIR [--chat messages.json] [--no-bos] [--special=false] [--decode] TEXT|-",
		Short: "Print the token ids of a text or chat (or the text of ids with --decode)",
		Long: `tokenize loads the tokenizer of a model directory (tokenizer.json, else
tokenizer.model + added_tokens.json, with tokenizer_config.json) and prints the
ids of TEXT on one line, space separated; "-" reads standard input, its one
final newline dropped (as generate --prompt - drops it: a heredoc adds one).
Special tokens written in TEXT (<|end_of_turn|>) are matched, as a Hugging
Face tokenizer, serve's /tokenize and generate's prompt match them;
--special=false encodes their text as plain text.

With --chat FILE ("-" for standard input) it renders a JSON list of
{"role","content"} messages (or a chat request {"messages": [...]}; read as serve
reads them: content a string or OpenAI's text parts; roles system, developer
(taken as system), user, assistant, tool; an assistant's tool_calls, a tool's
result and a request's tools rendered as serve renders them) with the chat template
and prints the ids, BOS as the template puts it. With --decode, TEXT is a list
of ids (spaces or commas, one argument or several) and the text is printed.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.model == "" {
				return usageError{errors.New("tokenize: --model DIR is required")}
			}
			if o.chat != "" {
				if len(args) != 0 {
					return usageError{errors.New("tokenize: --chat takes no TEXT argument")}
				}
				return nil
			}
			if o.decode && len(args) > 1 && !slices.Contains(args, "-") {
				return nil // ids as separate arguments
			}
			if len(args) != 1 {
				return usageError{fmt.Errorf("tokenize: want exactly one TEXT argument (or - for standard input), got %d", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTokenize(cmd, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model or tokenizer directory (required)")
	f.StringVar(&o.chat, "chat", "", "JSON file of chat messages to render with the chat template (- for standard input)")
	f.BoolVar(&o.noBOS, "no-bos", false, "do not put BOS in front of plain text")
	f.BoolVar(&o.decode, "decode", false, "TEXT is a list of ids: print their text")
	f.BoolVar(&o.special, "special", true, "recognise special tokens such as <|end_of_turn|> in TEXT, as a Hugging Face tokenizer does (--special=false: their text as plain text)")
	f.BoolVar(&o.json, "json", false, `print one JSON document: {"ids": [...]} or {"text": "..."}`)
	f.StringVar(&o.template, "chat-template", "", "chat template: openchat or openchat-math (default: tokenizer_config.json's chat_template)")
	f.BoolVar(&o.system, "system-messages", false, "keep system messages in chats (openchat drops them by default)")
	f.BoolVar(&o.noGenPrompt, "no-generation-prompt", false, "do not end a chat with the assistant prompt")
	return cmd
}

func runTokenize(cmd *cobra.Command, o tokenizeOptions, args []string) error {
	if o.chat != "" && o.decode {
		return usageError{errors.New("tokenize: --chat and --decode exclude each other")}
	}
	var input string
	if o.decode && len(args) > 1 {
		input = strings.Join(args, " ")
	} else if o.chat == "" {
		s, err := readArg(cmd.InOrStdin(), args[0])
		if err != nil {
			return err
		}
		input = s
	}
	tok, err := tokenizer.Load(o.model)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if o.decode {
		ids, err := parseIDs(input)
		if err != nil {
			return usageError{err}
		}
		text, err := tok.Decode(ids)
		if err != nil {
			return err
		}
		if o.json {
			enc := json.NewEncoder(out)
			enc.SetEscapeHTML(false)
			return enc.Encode(map[string]string{"text": text})
		}
		_, err = fmt.Fprintln(out, text)
		return err
	}
	var ids []int
	switch {
	case o.chat != "":
		req, err := readMessages(cmd.InOrStdin(), o.chat)
		if err != nil {
			return err
		}
		opts := tokenizer.ChatOptions{
			Template:            o.template,
			AddGenerationPrompt: !o.noGenPrompt,
			SystemMessages:      o.system,
		}
		msgs, _, tools := server.ChatMessages(req, tok, opts)
		opts.Tools = tools
		ids, err = tok.EncodeChat(msgs, opts)
		if err != nil {
			return err
		}
	case o.special:
		ids, err = tok.EncodeSpecial(input)
		if err == nil && tok.AddBOS() && !o.noBOS && tok.BOS() >= 0 {
			ids = append([]int{tok.BOS()}, ids...)
		}
	default:
		ids, err = tok.Encode(input)
		if err == nil && tok.AddBOS() && !o.noBOS && tok.BOS() >= 0 {
			ids = append([]int{tok.BOS()}, ids...)
		}
	}
	if err != nil {
		return err
	}
	if o.json {
		if ids == nil {
			ids = []int{}
		}
		return json.NewEncoder(out).Encode(map[string][]int{"ids": ids})
	}
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = strconv.Itoa(id)
	}
	_, err = fmt.Fprintln(out, strings.Join(strs, " "))
	return err
}

// readArg returns arg, or standard input when arg is "-" (readStdinText).
func readArg(stdin io.Reader, arg string) (string, error) {
	if arg != "-" {
		return arg, nil
	}
	return readStdinText(stdin, "tokenize")
}

// readStdinText reads a text given as "-" (tokenize's TEXT, generate's
// --prompt) whole, less one final newline ("\n" or "\r\n"): the one that
// echo, a shell heredoc or an editor ends the input with, not part of the
// text (llama.cpp drops it from a prompt file too); a second is kept. cmd
// names the command in the error.
func readStdinText(stdin io.Reader, cmd string) (string, error) {
	b, err := io.ReadAll(stdin)
	if err != nil {
		return "", fmt.Errorf("%s: reading standard input: %w", cmd, err)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\r\n"); ok {
		return t, nil
	}
	return strings.TrimSuffix(s, "\n"), nil
}

// readMessages reads a JSON list of messages or {"messages": [...]} (with
// tools, tool_choice and the other fields of a chat request serve reads).
func readMessages(stdin io.Reader, path string) (*openai.Request, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenize: --chat: %w", err)
	}
	// The messages are read and rendered as serve reads a chat
	// request's (OpenAI's content parts, developer taken as system, tool
	// calls and results, tools described): a bare list is the request's
	// "messages".
	body := bytes.TrimSpace(data)
	if len(body) > 0 && body[0] == '[' {
		body = append(append([]byte(`{"messages":`), body...), '}')
	}
	req, err := openai.Parse(body, true)
	if err != nil {
		return nil, fmt.Errorf("tokenize: --chat %s: want a JSON list of {\"role\",\"content\"} or {\"messages\": [...]}: %w", path, err)
	}
	return req, nil
}

// parseIDs parses ids separated by spaces, commas or brackets ("[1, 2]" works).
func parseIDs(s string) ([]int, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == '[' || r == ']' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	ids := make([]int, 0, len(fields))
	for _, f := range fields {
		id, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("tokenize: --decode: %q is not an integer id", f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
