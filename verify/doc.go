// Package verify measures checkpoints: perplexity on a text (the GPTQ paper's
// convention), the KL divergence of a quantized model's next-token
// distributions from its baseline's, and the conformance of a GPTQ
// checkpoint's tensors and configs with the on-disk format (spec §1–2).
//
// Perplexity convention (../shared/fixtures/models/openchat-tiny/reference.json,
// spec §6): the text is tokenized once, BOS is prepended once (where the
// tokenizer puts one before a text; Qwen2's does not), the ids are cut
// into non-overlapping windows of ctx tokens (the tail is dropped), and
// ppl = exp(mean over windows of the mean cross-entropy of tokens[1:] of each
// window given the tokens before it in that window).
package verify
