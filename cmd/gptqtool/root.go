package main

import (
	"errors"
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
	root.SetHelpCommand(newHelpCmd())
	// cobra adds its completion command when it executes; made now, it is
	// a group, so that "completion bsh" is refused rather than answered
	// with help on stdout and status 0.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Args = nil // (cobra's NoArgs would answer "--help" as a command)
			group(c)
		}
	}
	return root
}

// newHelpCmd is cobra's help command, except that a topic naming no
// command is a usage error (exit 2), as the same words without "help" are,
// where cobra printed "Unknown help topic" and exited 0, and printed a
// group's help for a subcommand it does not have ("help bench decod").
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "help prints the help of any command: gptqtool help [path to command].",
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, _, err := c.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []cobra.Completion
			for _, sub := range cmd.Commands() {
				if (sub.IsAvailableCommand() || sub.Name() == "help") && strings.HasPrefix(sub.Name(), toComplete) {
					names = append(names, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err == nil && cmd != nil && len(rest) > 0 && cmd.HasSubCommands() {
				err = fmt.Errorf("unknown command %q for %q", rest[0], cmd.CommandPath())
			}
			if cmd == nil || err != nil {
				return usageError{fmt.Errorf("help %s: %v (%q lists the commands)", strings.Join(args, " "), err, "gptqtool --help")}
			}
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			return cmd.Help()
		},
	}
}

// group makes cmd, a command of subcommands only (bench, verify), refuse an
// argument that names none of them as the root refuses an unknown command:
// a usage error with cobra's suggestions, where cobra printed the group's
// help on stdout and exited 0, so that "bench decod" read as a success.
// Alone, or with --help, it prints its help. Its flags are not parsed: a
// subcommand's flags after a mistyped name are not the group's error.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.DisableFlagParsing, cmd.DisableFlagsInUseLine = true, true
	cmd.SuggestionsMinimumDistance = 2 // (cobra's default, which only its own lookup sets)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
			return c.Help()
		}
		if strings.HasPrefix(args[0], "-") {
			return usageError{fmt.Errorf("unknown flag %s for %q: give a command (%q lists them)", args[0], c.CommandPath(), c.CommandPath()+" --help")}
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
		return usageError{errors.New(msg)}
	}
	return cmd
}
