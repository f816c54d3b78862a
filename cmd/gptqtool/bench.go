package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gptqtool/gptqtool/runtime/cuda"
)

func init() { subcommands = append(subcommands, newBenchCmd) }

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure speed and memory (JSON on stdout)",
		Args:  exactArgs(0),
	}
	cmd.AddCommand(newBenchQuantizeCmd())
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
and held, and the peak resident host memory (VmHWM).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			start := time.Now()
			var r quantizeRun
			if err := runQuantize(cmd, f, &r); err != nil {
				return err
			}
			out := map[string]any{
				"command":               "gptqtool " + strings.Join(os.Args[1:], " "),
				"backend":               r.backend.Name(),
				"wall_s":                time.Since(start).Seconds(),
				"calibrate_s":           r.calibrateS,
				"quantize_s":            r.summary.Seconds,
				"phases_s":              r.stats.Phases,
				"solver_phases_s":       r.solverPhases,
				"layers":                r.stats.Layers,
				"chunk_rows":            r.stats.ChunkRows,
				"activation":            r.stats.DType,
				"device_bytes_estimate": r.stats.DeviceBytes,
				"peak_rss_bytes":        peakRSS(),
				"summary":               r.summary,
				"calibration":           r.calibration,
			}
			if cb, ok := r.backend.(*cuda.Backend); ok {
				m := cb.MemStats()
				out["device"] = cb.Device()
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

// peakRSS is the process's peak resident set (VmHWM), 0 where unknown.
func peakRSS() int64 {
	fh, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
