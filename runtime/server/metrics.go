package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gptqtool/gptqtool/runtime/engine"
)

// metrics are the server's Prometheus series (GET /metrics).
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	prompt    prometheus.Counter
	generated prometheus.Counter
	ttft      prometheus.Histogram
	itl       prometheus.Histogram
	finished  *prometheus.CounterVec
}

func newMetrics(stats func() (engine.Stats, bool)) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gptqtool_http_requests_total",
		Help: "HTTP requests by route and status."}, []string{"route", "status"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gptqtool_http_request_duration_seconds",
		Help: "HTTP request durations by route.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14)}, []string{"route"})
	m.prompt = prometheus.NewCounter(prometheus.CounterOpts{Name: "gptqtool_prompt_tokens_total", Help: "Prompt tokens of finished requests."})
	m.generated = prometheus.NewCounter(prometheus.CounterOpts{Name: "gptqtool_generation_tokens_total", Help: "Generated tokens."})
	m.ttft = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gptqtool_time_to_first_token_seconds",
		Help: "From the request's admission to the queue to its first token.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)})
	m.itl = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gptqtool_inter_token_latency_seconds",
		Help: "Between two tokens of a request.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	m.finished = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gptqtool_requests_finished_total",
		Help: "Generation requests by finish reason."}, []string{"reason"})
	gauge := func(name, help string, f func(engine.Stats) float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			s, ok := stats()
			if !ok {
				return 0
			}
			return f(s)
		})
	}
	counter := func(name, help string, f func(engine.Stats) int64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			s, ok := stats()
			if !ok {
				return 0
			}
			return float64(f(s))
		})
	}
	m.reg.MustRegister(m.requests, m.duration, m.prompt, m.generated, m.ttft, m.itl, m.finished,
		counter("gptqtool_engine_steps_total", "Model steps run.", func(s engine.Stats) int64 { return s.Steps }),
		counter("gptqtool_engine_steps_ahead_total", "Model steps issued before the previous step's tokens were read.",
			func(s engine.Stats) int64 { return s.Ahead }),
		counter("gptqtool_engine_preemptions_total", "Sequences preempted for want of KV blocks (recomputed once blocks are free).",
			func(s engine.Stats) int64 { return s.Preemptions }),
		counter("gptqtool_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache at admission.",
			func(s engine.Stats) int64 { return s.PrefixQueries }),
		counter("gptqtool_prefix_cache_hits_total", "Prompt tokens found in the prefix cache (shared, not computed).",
			func(s engine.Stats) int64 { return s.PrefixHits }),
		counter("gptqtool_spec_decode_draft_tokens_total", "Draft tokens fed for verification (serve --speculate).",
			func(s engine.Stats) int64 { return s.Drafted }),
		counter("gptqtool_spec_decode_accepted_tokens_total", "Draft tokens the model's own draws confirmed (serve --speculate).",
			func(s engine.Stats) int64 { return s.Accepted }),
		gauge("gptqtool_kv_cache_blocks_cached", "Free KV cache blocks still holding a cached prefix.", func(s engine.Stats) float64 { return float64(s.BlocksCached) }),
		gauge("gptqtool_queue_depth", "Requests waiting for admission.", func(s engine.Stats) float64 { return float64(s.Queued) }),
		gauge("gptqtool_running_sequences", "Sequences in the running batch.", func(s engine.Stats) float64 { return float64(s.Running) }),
		gauge("gptqtool_kv_cache_blocks_used", "KV cache blocks held by sequences.", func(s engine.Stats) float64 { return float64(s.BlocksUsed) }),
		gauge("gptqtool_kv_cache_blocks_total", "KV cache blocks.", func(s engine.Stats) float64 { return float64(s.BlocksTotal) }),
		gauge("gptqtool_kv_cache_usage_ratio", "Fraction of the KV cache blocks in use.", func(s engine.Stats) float64 {
			if s.BlocksTotal == 0 {
				return 0
			}
			return float64(s.BlocksUsed) / float64(s.BlocksTotal)
		}),
	)
	return m
}

// observe records one HTTP request.
func (m *metrics) observe(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// The engine.Observer methods.

func (m *metrics) FirstToken(d time.Duration) { m.ttft.Observe(d.Seconds()) }
func (m *metrics) InterToken(d time.Duration) { m.itl.Observe(d.Seconds()) }
func (m *metrics) Finished(reason string, prompt, generated int) {
	m.prompt.Add(float64(prompt))
	m.generated.Add(float64(generated))
	m.finished.WithLabelValues(reason).Inc()
}
