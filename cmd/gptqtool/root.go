package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

// subcommands holds the constructors of the subcommands; each command file
// appends its own in an init function, so that files stay independent.
var subcommands []func() *cobra.Command

// usageError marks errors caused by how the command was invoked (exit 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "gptqtool",
		Short: "Quantize LLM checkpoints with GPTQ, verify them and run them",
		Long: `gptqtool quantizes Mistral/Llama-family Hugging Face checkpoints with GPTQ,
writes checkpoints that AutoGPTQ, GPTQModel, ExLlama, vLLM and TGI load unchanged,
and checks and runs them with its own CPU (and CUDA) runtime.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{err}
	})
	// Flag values every command that has the flag checks alike, before it
	// reads anything.
	root.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		if f := c.Flags().Lookup("chat-template"); f != nil && f.Value.String() != "" && !slices.Contains(tokenizer.TemplateNames, f.Value.String()) {
			return usageError{fmt.Errorf("--chat-template %q: want %s", f.Value.String(), strings.Join(tokenizer.TemplateNames, " or "))}
		}
		return nil
	}
	for _, mk := range subcommands {
		root.AddCommand(mk())
	}
	return root
}
