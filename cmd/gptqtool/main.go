// Command gptqtool quantizes Mistral/Llama-family checkpoints with GPTQ,
// checks the result and runs it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
)

func main() {
	os.Exit(runMain())
}

// runMain executes the command line and returns the exit status
// (exitCode). GPTQTOOL_CPUPROFILE=FILE writes a Go CPU profile of the
// whole command to FILE (go tool pprof reads it), for finding where host
// time goes, such as a model's load.
func runMain() int {
	if path := os.Getenv("GPTQTOOL_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gptqtool: GPTQTOOL_CPUPROFILE:", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "gptqtool: GPTQTOOL_CPUPROFILE:", err)
			f.Close()
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "gptqtool: GPTQTOOL_CPUPROFILE:", err)
			}
		}()
	}
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, errorLine(err))
		sig, _ := caught.Load().(os.Signal)
		return exitCode(err, sig)
	}
	return 0
}

// exitCode is the exit status of a command that failed with err: 2 for a
// usage error; 128 plus the signal's number for a command that sig (caught
// by interruptible, nil if none) stopped, as shells report a command a
// signal ended (130 for Ctrl-C, 143 for SIGTERM), so that a script can tell
// an interrupted run from a failed one; 1 for any other.
func exitCode(err error, sig os.Signal) int {
	var ue usageError
	if errors.As(err, &ue) || cobraUsage(err) {
		return 2
	}
	if n, ok := sig.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}

// errorLine is the line an error ends the command with. A command stopped
// by an interrupt (its context cancelled) says so, where the error alone
// would read "context canceled".
func errorLine(err error) string {
	if errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "interrupted") {
		return "gptqtool: interrupted: " + err.Error()
	}
	return "gptqtool: " + err.Error()
}

// cobraUsage recognises the usage errors cobra makes itself (it has no
// error types for them): missing required flags, unknown commands.
func cobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "required flag(s)") || strings.HasPrefix(msg, "unknown command")
}

// caught holds the signal (os.Signal) that cancelled an interruptible
// context, for the exit status.
var caught atomic.Value

// interruptible is ctx cancelled by an interrupt (Ctrl-C) or SIGTERM (what
// kill, systemd and container runtimes send), so that a command stopped
// either way cleans up as it does for Ctrl-C: nothing half-written is left
// that looks like a checkpoint. The signal is kept in caught, and is the
// context's cause. stop restores the default handling.
func interruptible(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			caught.Store(s)
			cancel(signalCause{s})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel(context.Canceled)
	}
}

// signalCause is the cause of a context interruptible cancelled: the
// signal, for a command that answers it (serve's shutdown), wrapping
// context.Canceled.
type signalCause struct{ sig os.Signal }

func (e signalCause) Error() string {
	return fmt.Sprintf("%v signal received: %v", e.sig, context.Canceled)
}
func (e signalCause) Unwrap() error { return context.Canceled }
