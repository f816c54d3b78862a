package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/engine"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// testServer is a server over a real engine and model on the CPU backend,
// listening on loopback.
type testServer struct {
	URL    string
	Server *Server
	Engine *engine.Engine
	Tok    *tokenizer.Tokenizer
	stop   context.CancelFunc
	done   chan error
}

// serverConfig tunes startServer.
type serverConfig struct {
	Model     string // fixture path, default models/openchat-tiny
	Options   Options
	Engine    engine.Options // Model is filled in
	NotLoaded bool           // start without a backend (503 until SetBackend)
	Grace     time.Duration  // shutdown grace (default 5s)
	// Pace, when set, holds the engine's goroutine this long after each
	// generated token, so that a client racing a stream (the chat page's
	// Stop) is not outrun by a fast machine.
	Pace time.Duration
	// Backend, when set, runs the model (default: the portable CPU
	// backend), e.g. a failingBackend.
	Backend runtime.Backend
	// Tokenizer, when set, is used in place of the model's own.
	Tokenizer *tokenizer.Tokenizer
}

// failingBackend is the CPU backend whose syncs, downloads and token draws
// fail once fail is set: the engine's next step fails, as a device error
// would.
type failingBackend struct {
	*cpu.Backend
	fail atomic.Bool
}

// errDevice is failingBackend's error.
var errDevice = errors.New("test device: lost")

func (b *failingBackend) Sync() error {
	if b.fail.Load() {
		return errDevice
	}
	return b.Backend.Sync()
}

func (b *failingBackend) Download(dst []float32, t runtime.Tensor) error {
	if b.fail.Load() {
		return errDevice
	}
	return b.Backend.Download(dst, t)
}

func (b *failingBackend) SampleTokens(dst []int32, logits runtime.Tensor, rows []int, p []runtime.SampleParams) error {
	if b.fail.Load() {
		return errDevice
	}
	return b.Backend.SampleTokens(dst, logits, rows, p)
}

func (b *failingBackend) SampleTokensTo(dst, logits runtime.Tensor, rows []int, p []runtime.SampleParams) (runtime.PendingTokens, error) {
	if b.fail.Load() {
		return nil, errDevice
	}
	return b.Backend.SampleTokensTo(dst, logits, rows, p)
}

func (b *failingBackend) GreedyPending(s, n int) (runtime.PendingTokens, error) {
	if b.fail.Load() {
		return nil, errDevice
	}
	return b.Backend.GreedyPending(s, n)
}

// pacedObserver forwards to the server's observer and sleeps after each
// token; it runs on the engine's goroutine, so it paces every sequence.
type pacedObserver struct {
	engine.Observer
	pace time.Duration
}

func (o pacedObserver) FirstToken(d time.Duration) {
	o.Observer.FirstToken(d)
	time.Sleep(o.pace)
}

func (o pacedObserver) InterToken(d time.Duration) {
	o.Observer.InterToken(d)
	time.Sleep(o.pace)
}

// startServer runs a server for the test on a free loopback port and stops
// it (gracefully) when the test ends. Model weights run on the portable
// CPU backend, so batched and single requests give identical tokens.
func startServer(t testing.TB, c serverConfig) *testServer {
	t.Helper()
	if c.Model == "" {
		c.Model = "models/openchat-tiny"
	}
	dir := fixtures.Path(t, c.Model)
	tok := c.Tokenizer
	if tok == nil {
		var err error
		if tok, err = tokenizer.Load(dir); err != nil {
			t.Fatal(err)
		}
	}
	var be runtime.Backend = cpu.NewPortable(2)
	if c.Backend != nil {
		be = c.Backend
	}
	m, err := model.Load(dir, be)
	if err != nil {
		t.Fatal(err)
	}
	if c.Options.ModelName == "" {
		c.Options.ModelName = filepath.Base(dir)
	}
	s := New(c.Options)
	eo := c.Engine
	eo.Model = m
	if eo.MaxLen == 0 {
		// 1024 positions, or fewer where the model was loaded for fewer
		// (stories260K's 512): a cache past its context is refused.
		eo.MaxLen = min(1024, m.Context())
	}
	if eo.Blocks == 0 {
		eo.Blocks = 1024
	}
	if eo.MaxQueue == 0 {
		eo.MaxQueue = 256
	}
	eo.Observer = s.Observer()
	if c.Pace > 0 {
		eo.Observer = pacedObserver{eo.Observer, c.Pace}
	}
	e, err := engine.New(eo)
	if err != nil {
		t.Fatal(err)
	}
	stops := slices.Clone(m.EOSTokenIDs)
	if id, ok := tok.TokenID("<|end_of_turn|>"); ok && !slices.Contains(stops, id) {
		stops = append(stops, id)
	}
	b := &Backend{Engine: e, Tokenizer: tok, StopTokens: stops, Temperature: 1, TopP: 1}
	if !c.NotLoaded {
		s.SetBackend(b)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{URL: "http://" + ln.Addr().String(), Server: s, Engine: e, Tok: tok, stop: cancel, done: make(chan error, 1)}
	grace := c.Grace
	if grace == 0 {
		grace = 5 * time.Second
	}
	go func() { ts.done <- Run(ctx, ln, s, func() *engine.Engine { return e }, grace) }()
	t.Cleanup(func() {
		ts.Stop()
		m.Close()
	})
	// Wait until it answers.
	for i := 0; i < 100; i++ {
		if resp, err := http.Get(ts.URL + "/health"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ts
}

// Backend returns the backend the server would have been given, for tests
// that start it unloaded.
func (ts *testServer) backend() *Backend {
	return &Backend{Engine: ts.Engine, Tokenizer: ts.Tok, Temperature: 1, TopP: 1}
}

// Stop shuts the server down gracefully and waits (idempotent).
func (ts *testServer) Stop() error {
	if ts.stop == nil {
		return nil
	}
	ts.stop()
	ts.stop = nil
	return <-ts.done
}
