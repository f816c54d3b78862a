// Package grammar constrains generation to JSON (structured output): a JSON
// Schema, the subset that structured-output APIs take, compiled to a
// byte-level pushdown recognizer, and the tokens of a vocabulary allowed in
// each of its states.
//
// Compile turns a schema into a Grammar's nodes. Each node is a value
// kind: an object with its properties in the schema's order (optional
// ones may be skipped, required ones may not; keys beyond them only where
// the schema declares no properties), an array, a string, a number, one
// of a list of JSON texts (enum, const, true, false, null), or a union of
// alternatives (anyOf, a list of types, and a oneOf whose alternatives
// cannot share a value: different types or literals, or a required tag of
// different values). The output is always valid against the schema; where
// the schema allows more than the recognizer makes (properties in another
// order, keys beyond the declared ones), the recognizer makes the common
// form. Keywords it cannot honour (pattern, format, numeric bounds, a oneOf
// whose alternatives overlap, ...) are refused by name, not ignored, and so
// is a schema whose values cannot all be finished within MaxDepth. Choice
// makes a Grammar of raw texts instead (vLLM's guided_choice).
//
// The recognizer reads bytes. Its state is a set of stacks of frames,
// each frame immutable and shared with the states that came before, so
// that a state costs one frame a byte. Whitespace is allowed between
// tokens of JSON as one space, or one or two newlines and an indent of at
// most MaxIndent spaces and tabs (compact or indented JSON, but no run a
// model could extend for ever), and not after the value: once the value
// is complete only a stop token may follow.
//
// A Vocab holds the bytes of every token a tokenizer can produce as text
// (SentencePiece pieces with "▁" as a space, <0xNN> byte pieces as their
// byte) in a trie. A Matcher follows one sequence's tokens through a
// Grammar and gives, for its current state, the bitmask of allowed tokens
// (the trie walked with the recognizer, subtrees cut where a byte is
// refused) and whether the value is complete. Inside a string most tokens
// are plain characters that leave it open: those are set from a list made
// once (within maxLength) and only the others' trie is walked. Masks are
// memoized in the Grammar by state, so that a string's content or a
// repeated array item walks the trie once. A Grammar is safe for
// concurrent use; a Matcher is not.
package grammar
