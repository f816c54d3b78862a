package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/verify"
)

func init() { subcommands = append(subcommands, newBenchCmd) }

func newBenchCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "bench",
		Short: "Measure speed and memory (JSON on stdout)",
	})
	cmd.AddCommand(newBenchQuantizeCmd(), newBenchServeCmd(), newBenchDecodeCmd(), newBenchPrefillCmd())
	// Their output is one JSON document either way; --json is taken, as
	// every other command takes it, so that "bench … --json" is no error.
	for _, c := range cmd.Commands() {
		if c.Flags().Lookup("json") == nil {
			c.Flags().Bool("json", false, "one JSON document (what bench prints in any case)")
		}
	}
	return cmd
}

func newBenchServeCmd() *cobra.Command {
	var o verify.LoadOptions
	var responseFormat string
	cmd := &cobra.Command{
		Use:   "serve --url URL [--concurrency 64] [--requests N] [--max-tokens 256] [--ignore-eos]",
		Short: "Load an OpenAI-compatible server with concurrent streams; report tok/s, TTFT and inter-token latency",
		Long: `bench serve sends --requests streamed completions (default: one per stream) to a running
gptqtool serve (or any OpenAI-compatible server), --concurrency at a time, and prints one JSON
document: the aggregate generated tokens per second over the wall time, and the time to first
token and between tokens (mean, p50, p90, p99, max) as the client sees them. With --score each
request scores its prompt as lm-evaluation-harness's loglikelihood requests do, and the document
has the prompt tokens scored a second and each request's latency. The document is printed even
when requests failed ("errors", "first_error"); bench serve then exits 1, saying how many.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.URL == "" {
				return usageError{errors.New("--url is required")}
			}
			if u, err := url.Parse(o.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				// Every request would fail on it, after all were sent.
				return usageError{fmt.Errorf("--url %q: want an http:// or https:// URL with a host, e.g. http://127.0.0.1:18888", o.URL)}
			}
			if o.Concurrency <= 0 || o.MaxTokens <= 0 || o.Requests < 0 {
				return usageError{errors.New("--concurrency and --max-tokens must be positive, --requests 0 or more")}
			}
			if o.Score && o.Chat {
				return usageError{errors.New("--score scores a completion prompt: drop --chat")}
			}
			if !(o.Temperature >= 0) || math.IsInf(o.Temperature, 0) {
				return usageError{fmt.Errorf("--temperature %v: want a finite value >= 0", o.Temperature)}
			}
			if responseFormat != "" {
				raw := []byte(responseFormat)
				if name, ok := strings.CutPrefix(responseFormat, "@"); ok {
					var err error
					if raw, err = os.ReadFile(name); err != nil {
						return fmt.Errorf("--response-format: %w", err)
					}
				}
				var obj map[string]json.RawMessage
				if err := json.Unmarshal(raw, &obj); err != nil {
					return usageError{fmt.Errorf("--response-format: %v: want a JSON object such as {\"type\": \"json_object\"}", err)}
				}
				o.ResponseFormat = raw
			}
			r, err := verify.LoadTest(cmd.Context(), o)
			if err != nil {
				return err
			}
			if err := writeJSON(cmd.OutOrStdout(), map[string]any{"command": "gptqtool " + strings.Join(os.Args[1:], " "), "result": r}); err != nil {
				return err
			}
			// A run in which nothing succeeded measured nothing, and one
			// in which some requests failed measured another load than
			// asked (fewer streams, shorter ones): neither is a result a
			// script should take for a clean run.
			switch {
			case r.Requests > 0 && r.Errors == r.Requests:
				return fmt.Errorf("bench serve: all %d requests failed; the first: %s", r.Requests, r.FirstError)
			case r.Errors > 0:
				return fmt.Errorf("bench serve: %d of %d requests failed; the first: %s", r.Errors, r.Requests, r.FirstError)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.URL, "url", "", "the server's base URL, e.g. http://127.0.0.1:18888 (or an OpenAI base_url ending in /v1)")
	fs.StringVar(&o.APIKey, "api-key", "", "sent as Authorization: Bearer KEY")
	fs.StringVar(&o.Model, "model-name", "", "the model field of the requests (default: none)")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "streams in flight")
	fs.IntVar(&o.Requests, "requests", 0, "requests in all (0: one per stream)")
	fs.IntVar(&o.MaxTokens, "max-tokens", 256, "tokens each request generates (fewer if the model stops)")
	fs.BoolVar(&o.IgnoreEOS, "ignore-eos", false, "ask the server to run every request to --max-tokens (ignore_eos: gptqtool serve, vLLM)")
	fs.StringVar(&o.Prompt, "prompt", "Write a long story about a lighthouse keeper.", "the prompt of every request")
	fs.BoolVar(&o.Chat, "chat", false, "use /v1/chat/completions with the prompt as a user message")
	fs.Float64Var(&o.Temperature, "temperature", 1, "sampling temperature")
	fs.StringVar(&responseFormat, "response-format", "", `every request's response_format, a JSON object or @FILE holding one (structured output: {"type": "json_object"}, or {"type": "json_schema", "json_schema": {"name": ..., "schema": ...}})`)
	fs.BoolVar(&o.Score, "score", false, "score the prompt instead (lm-evaluation-harness's loglikelihood request: echo, logprobs 1, max_tokens 1, not streamed) and report prompt tokens scored a second and each request's latency")
	return cmd
}

func newBenchQuantizeCmd() *cobra.Command {
	var f quantizeFlags
	cmd := &cobra.Command{
		Use:   "quantize [quantize flags]",
		Short: "Run quantize and report wall time per phase and per layer, peak device and host memory",
		Long: `bench quantize takes the flags of quantize, runs it with the backend synchronised at phase
boundaries, and prints one JSON document: wall time end to end and per phase (calibrate, load,
embed, forward, hessian, solve, write), per layer, the peak device memory the allocator reserved
and held, and the peak resident host memory (VmHWM on Linux, ru_maxrss on macOS, the peak working set on Windows).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.dryRun {
				return usageError{errors.New("--dry-run: bench quantize measures a run; quantize --dry-run prints the plan")}
			}
			start := time.Now()
			var r quantizeRun
			if err := runQuantize(cmd, f, &r); err != nil {
				return err
			}
			if r.summary == nil {
				// (--resume of a checkpoint already complete: nothing ran.)
				return fmt.Errorf("bench quantize: %s is already complete: nothing was quantized, so nothing was measured (give a new --out, or drop --resume)", f.out)
			}
			out := map[string]any{
				"command":               "gptqtool " + strings.Join(os.Args[1:], " "),
				"backend":               r.backendName,
				"wall_s":                time.Since(start).Seconds(),
				"calibrate_s":           r.calibrateS,
				"quantize_s":            r.summary.Seconds,
				"phases_s":              r.stats.Phases,
				"solver_phases_s":       r.solverPhases,
				"layers":                r.stats.Layers,
				"chunk_rows":            r.stats.ChunkRows,
				"activation":            r.stats.DType,
				"device_bytes_estimate": r.stats.DeviceBytes,
				"peak_rss_bytes":        publish.PeakRSS(),
				"summary":               r.summary,
				"calibration":           r.calibration,
			}
			if r.gpu != nil {
				m := r.gpu.mem
				out["device"] = r.gpu.device
				out["peak_gpu_reserved_bytes"] = m.PeakReserved
				out["peak_gpu_in_use_bytes"] = m.PeakInUse
				out["gpu_total_bytes"] = m.Total
				out["peak_gpu_device_used_bytes"] = m.PeakDeviceUsed
			}
			return writeJSON(cmd.OutOrStdout(), out)
		},
	}
	addQuantizeFlags(cmd, &f)
	return cmd
}
