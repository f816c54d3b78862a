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
// form. A string's pattern (JSON Schema's: the value contains a match;
// ^...$ anchors it) and format (date, time, date-time, uuid, ipv4, ipv6,
// email, hostname; formats.go says what each makes) are regular
// expressions. Keywords it cannot honour (numeric bounds, a oneOf whose
// alternatives overlap, an unknown format, a pattern past what the
// automaton does, ...) are refused by name and path, not ignored, and so
// is a schema whose values cannot all be finished within MaxDepth. Choice makes a Grammar of raw texts
// instead (vLLM's guided_choice), Regex one of the raw texts a regular
// expression matches whole (vLLM's guided_regex).
//
// Sequence makes a Grammar of raw texts and values of one schema in
// order, with a part that may repeat: a model's own tool-call format
// (Hermes' "<tool_call>\n" call "\n</tool_call>", Mistral's
// "[TOOL_CALLS]" and a list of calls). A part may also be a value of one
// of the schema's $defs (Ref), a raw text of a regular expression
// (Pattern), or one of several sequences of parts (Alts; an empty one
// makes the part optional): a call whose tool's name is text and whose
// arguments are that tool's (Mistral's "[TOOL_CALLS]" NAME "[ARGS]"
// {...}), Qwen3-Coder's XML parameters with raw values. Lazy applies a Grammar from a
// trigger on (llama.cpp's lazy grammars): free text until the text holds
// the trigger, the Grammar's value from the trigger on; a token that would
// complete the trigger with bytes the Grammar refuses is not allowed, so
// that a trigger can always go on. NewVocabWith gives chosen added tokens
// (the format's markers) their text, so that a grammar may allow them.
//
// A regular expression is parsed by regexp/syntax (RE2's syntax with Perl
// flags, as Go's regexp takes it; ECMA-262's \uXXXX escapes rewritten
// first, and in a schema's pattern . and \s as ECMA-262 reads them, as
// validators run it: . no line terminator, \s Unicode's spaces too) and
// compiled here to a deterministic automaton over the bytes of
// UTF-8 text: a character class becomes the byte sequences of its code
// points (surrogates left out), the subset construction makes at most
// MaxRegexStates states in bounded work (past either the pattern is
// refused, within a fraction of a second; the patterns of a schema, or of
// a Compiler's schemas, share the bound, one repeated compiled once), the
// states from which no match
// can be reached are cut, so that no byte is allowed after which the text
// cannot match, and equivalent states are merged (Hopcroft).
// ^ and $ are the text's start and end, wherever they stand; . is any
// character but \n (RE2's: ECMA-262's leaves out \r, U+2028 and U+2029
// too); \d, \w and \s are ASCII. Lookaround and backreferences (which
// RE2 does not parse), the line anchors of (?m) and \b are refused with
// the reason. In a string the automaton reads the decoded value: a raw
// character's bytes, an escape's character. Escapes are allowed only
// where JSON needs them (\" \\ \/ \b \f \n \r \t, \u00XX for control
// characters) and only where the character keeps the automaton alive, so
// that every prefix allowed can finish; the closing quote comes where the
// automaton accepts. A pattern beside a format is their intersection, and
// minLength and maxLength (in code points) are counted in the automaton
// itself (a product, within MaxRegexStates, or refused at the bound's
// path), unless every text it takes is within them. Automata are immutable; a format's is made once and shared.
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
// (Tokenizer.TokenBytes: SentencePiece pieces with "▁" as a space, <0xNN>
// byte pieces as their byte, byte-level pieces as the bytes their GPT-2
// characters stand for, which may be part of a UTF-8 character) in a
// trie. A Matcher follows one sequence's tokens through a Grammar and
// gives, for its current state, the bitmask of allowed tokens (the trie
// walked with the recognizer, subtrees cut where a byte is
// refused) and whether the value is complete. Inside a string most tokens
// are plain characters that leave it open: those are set from a list made
// once (within maxLength) and only the others' trie is walked (not in a
// string with a pattern or format, where every token's bytes must keep
// the automaton alive: the whole trie is walked). Masks are memoized in
// the Grammar by state (the automaton's state included), so that a
// string's content or a repeated array item walks the trie once. A Grammar is safe for
// concurrent use; a Matcher is not.
package grammar
