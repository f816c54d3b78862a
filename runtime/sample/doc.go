// Package sample is the reference token sampler and generation loop.
//
// A Sampler turns host logits []float32 [vocab] into a token id: greedy
// (argmax, lowest id on ties) at temperature 0, otherwise softmax of
// logits/temperature restricted by top-k and then top-p (the order of
// transformers' logits warpers), drawn from a seeded PCG generator, so a
// seed reproduces a run exactly.
//
// Generate runs a prompt through a model with a KV cache and samples one
// token per forward step until a stop id or the token limit, calling a
// callback per token for streaming.
package sample
