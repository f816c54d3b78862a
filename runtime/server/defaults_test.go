package server

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/gptqtool/gptqtool/runtime/engine"
)

// TestRepetitionPenaltyDefault: Backend.RepetitionPenalty (serve takes it
// from generation_config.json, as vLLM takes its repetition_penalty) is
// the penalty of a request that gives none, and a request's
// repetition_penalty, 1 included, replaces it. stories260K's greedy
// continuation repeats itself, so a penalty of 1.5 changes it.
func TestRepetitionPenaltyDefault(t *testing.T) {
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral", Engine: engine.Options{MaxLen: 512}})
	complete := func(extra string) string {
		t.Helper()
		code, data := post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0%s}`, extra))
		if code != http.StatusOK {
			t.Fatalf("%d: %s", code, data)
		}
		return decode(t, data).Choices[0].Text
	}
	plain := complete("")
	asked := complete(`, "repetition_penalty": 1.5`)
	if asked == plain {
		t.Fatalf("repetition_penalty 1.5 leaves the greedy text as it is: %q", plain)
	}
	b := *ts.Server.backend.Load()
	b.RepetitionPenalty = 1.5
	ts.Server.SetBackend(&b)
	if got := complete(""); got != asked {
		t.Errorf("default repetition penalty 1.5, none asked:\n got %q\nwant %q (repetition_penalty 1.5 asked)", got, asked)
	}
	if got := complete(`, "repetition_penalty": 1`); got != plain {
		t.Errorf("default repetition penalty 1.5, 1 asked:\n got %q\nwant %q (no penalty)", got, plain)
	}
}
