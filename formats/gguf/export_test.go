package gguf

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// CheckHash is tok's check hash, as ByteLevelPre looks it up.
func CheckHash(tok *tokenizer.Tokenizer) (string, error) { return checkHash(tok) }

// SetCheckHash names the check hash h name until tb ends: a test
// vocabulary that stands for a published one whose hash the table holds
// (a small vocabulary under Phi-4-mini's pre-tokenizer, for the gpt-4o
// hash of its 200064 ids).
func SetCheckHash(tb testing.TB, h, name string) {
	tb.Helper()
	if _, ok := chkHashes[h]; ok {
		tb.Fatalf("check hash %s is %s's already", h, chkHashes[h])
	}
	chkHashes[h] = name
	tb.Cleanup(func() { delete(chkHashes, h) })
}
