// Package tokenizer loads the BPE tokenizers of Hugging Face checkpoints
// and turns text into token ids and back, exactly as the models were
// trained: SentencePiece-style vocabularies (Llama 2, Mistral; the ids of
// openchat-3.5, the Mistral-7B v0.1 vocabulary plus <|end_of_turn|>=32000
// and <|pad_0|>=32001) and byte-level ones (GPT-2, Llama 3, Qwen2), for
// calibration, perplexity and serving.
//
// # Loaders
//
// Two loaders give identical ids for SentencePiece-style vocabularies:
//
//   - LoadJSON reads HF tokenizer.json: a BPE model with byte_fallback whose
//     merges ("a b" or ["a","b"]) apply by rank, the legacy normalizer
//     (Prepend "▁", Replace " "→"▁") or the Metaspace pre-tokenizer, and
//     added_tokens with their special/lstrip/rstrip/single_word flags.
//   - LoadSentencePiece reads tokenizer.model (the SentencePiece ModelProto,
//     parsed with protowire: pieces=1 {piece=1, score=2, type=3},
//     trainer_spec=2 {model_type=3, byte_fallback=35, unk/bos/eos_id=40..42},
//     normalizer_spec=3 {add_dummy_prefix=3, remove_extra_whitespaces=4,
//     escape_whitespaces=5}) and merges as SentencePiece's bpe_model.cc does:
//     the adjacent pair whose concatenation is the highest-scoring piece
//     first, leftmost on ties.
//
// LoadJSON also reads byte-level BPE tokenizer.json files: the ByteLevel
// pre-tokenizer (add_prefix_space; use_regex splits with GPT-2's pattern)
// alone or in a Sequence after Split (a Regex or String pattern, any
// behaviour, invert), Digits and Punctuation pre-tokenizers (steps after
// ByteLevel see the byte spelling, as in HF tokenizers); the ByteLevel
// decoder; normalizer null or NFC; model ignore_merges, byte_fallback
// false; post_processor TemplateProcessing (alone or in a Sequence with
// ByteLevel: at most one special token before the text, BOS, and one
// after), ByteLevel or null (no BOS). Refused with an error naming the
// file and field: other normalizers, pre-tokenizers, decoders and
// post-processors, a second ByteLevel, byte_fallback, a Regex pattern
// outside the Oniguruma subset that onigRegex matches exactly (see
// there: look-behind, possessive and lazy repeats, \w, \b, nested
// classes...), and a normalized added token with non-ASCII text beside NFC
// (HF matches it in the normalized text). Tested against llama.cpp's test
// vectors (HF tokenizers' ids) for GPT-2, Llama 3, Qwen2, Qwen3.5,
// DeepSeek LLM and Coder, Falcon, StarCoder, Refact, Command-R and MPT.
//
// Load picks tokenizer.json when present, else tokenizer.model plus
// added_tokens.json, and applies special_tokens_map.json and
// tokenizer_config.json (add_bos_token, add_eos_token, bos/eos/unk tokens,
// added_tokens_decoder, chat_template). The chat template is transformers':
// chat_template.jinja (with additional_chat_templates/*.jinja), where
// transformers 4.47 and later save it, over tokenizer_config.json's
// chat_template, over chat_template.json's. For a byte-level tokenizer BOS
// and EOS go where the post_processor's template puts them (Llama 3's
// <|begin_of_text|>, which BOS then is) unless tokenizer_config.json has
// add_bos_token or add_eos_token, which then decide, with bos_token and
// eos_token, as transformers 5 rebuilds the template.
//
// # Encoding
//
// SentencePiece-style text is normalized per segment (the text between two
// added tokens): "▁" is put in front (dummy prefix; after every added token
// too, as the legacy Llama tokenizer and the openchat model card do) and
// spaces become "▁". Whitespace runs are kept as SentencePiece keeps them.
// Both merge orders reduce to one algorithm over a table of (left id,
// right id) → (priority, merged id); characters without a piece become
// <0xNN> byte pieces.
//
// Speed: BPE runs per word, a word being cut before every "▁" that follows
// another character. This is exact, not a heuristic: at load the vocabulary
// is checked to hold no piece with "▁" after another character, so no
// symbol can ever span such a cut, and merges on different sides never
// interact. Words are memoised per call; a whole-corpus test vector checks it.
//
// Byte-level text is, per segment, NFC-normalized where the normalizer
// says so and split into pre-tokens by the pre-tokenizer's steps; each
// pre-token's UTF-8 bytes are spelt with GPT-2's bytes_to_unicode
// characters ("Ġ" for the space) and merged by rank, the same BPE as above
// (a pre-token that is itself a piece taken whole with ignore_merges).
// Pre-tokens are memoised per call, before their byte spelling.
//
// Encode never recognises added tokens; EncodeSpecial does; EncodeChat
// recognises them only in template text, never in message content.
//
// # Decoding
//
// Decode and the streaming Decoder share one state machine, so the pieces a
// Decoder returns concatenate to Decode's result and never split a UTF-8
// character. See Decode for how BOS, EOS and added tokens render, and how
// invalid UTF-8 does (U+FFFD per byte for <0xNN> pieces, as SentencePiece
// and HF's ByteFallback decoder; per maximal invalid sequence for
// byte-level pieces, as HF's ByteLevel decoder's from_utf8_lossy).
//
// # Chat templates
//
// tokenizer_config.json's chat_template is compared (whitespace-insensitive)
// with the known openchat templates, which are rendered natively; any other
// is rendered by package jinja as transformers' apply_chat_template renders
// it (messages, add_generation_prompt, bos_token, eos_token; tools and
// documents none), and the text is tokenized with added tokens recognised
// in the template's text but not in message content, so "{{ bos_token }}"
// is the BOS id and no other BOS is added. A template using Jinja outside
// that subset is an error wrapping ErrUnknownTemplate, naming the construct
// and its line and column, unless ChatOptions.Template names one; a
// template that parses but fails on the messages given (an attribute they
// lack, a render limit) wraps ErrTemplateRender.
//
// A Tokenizer is immutable after loading and safe for concurrent use; a
// Decoder is not.
package tokenizer
