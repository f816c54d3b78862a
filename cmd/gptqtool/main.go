// Command gptqtool quantizes Mistral/Llama-family checkpoints with GPTQ,
// checks the result and runs it.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "gptqtool:", err)
		var ue usageError
		if errors.As(err, &ue) || cobraUsage(err) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// cobraUsage recognises the usage errors cobra makes itself (it has no
// error types for them): missing required flags, unknown commands.
func cobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "required flag(s)") || strings.HasPrefix(msg, "unknown command")
}
