package openai

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	r, err := Parse([]byte(`{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
		"temperature": 0.5, "top_p": 1, "top_k": -1, "max_completion_tokens": 7, "max_tokens": 9, "stop": "x", "seed": 3, "n": 2,
		"presence_penalty": 0.1, "logprobs": true, "top_logprobs": 4, "stream": true, "stream_options": {"include_usage": true},
		"condition": "Math Correct", "unknown": [1, 2]}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if r.Messages[0].Content != "a\nb" || *r.Temperature != 0.5 || *r.TopK != 0 || *r.MaxTokens != 7 || r.Stop[0] != "x" ||
		*r.Seed != 3 || r.N != 2 || r.PresencePenalty != 0.1 || !r.Logprobs || r.TopLogprobs != 4 || !r.Stream ||
		!r.StreamOptions.IncludeUsage || r.Condition != "Math Correct" || r.Model != "m" {
		t.Errorf("parsed %+v", r)
	}
	r, err = Parse([]byte(`{"prompt": [1, 2, 3], "logprobs": 2, "echo": true, "ignore_eos": true}`), false)
	if err != nil || len(r.Prompts) != 1 || len(r.Prompts[0].IDs) != 3 || !r.Logprobs || r.TopLogprobs != 2 || !r.Echo || r.N != 1 || !r.IgnoreEOS {
		t.Errorf("text request %+v, %v", r, err)
	}
	if r, err := Parse([]byte(`{"messages": [{"role": "developer", "content": "d"}, {"role": "user", "content": "u"}]}`), true); err != nil || r.Messages[0].Role != "system" {
		t.Errorf("a developer message: %+v, %v, want it as system", r, err)
	}
	// What clients send by default for the features not supported passes.
	if _, err := Parse([]byte(`{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "text"}, "tools": [], "tool_choice": "none", "suffix": null, "best_of": 1, "stop_token_ids": []}`), true); err != nil {
		t.Errorf("neutral values refused: %v", err)
	}
	r, err = Parse([]byte(`{"prompt": "x", "logit_bias": {"32000": -100, "7": 2.5}, "stop_token_ids": [2, 13], "min_tokens": 4}`), false)
	if err != nil || r.LogitBias[32000] != -100 || r.LogitBias[7] != 2.5 || len(r.StopTokenIDs) != 2 || r.MinTokens != 4 {
		t.Errorf("logit_bias, stop_token_ids, min_tokens: %+v, %v", r, err)
	}
	// Batches: lm-evaluation-harness's loglikelihood request, and strings.
	r, err = Parse([]byte(`{"prompt": [[1, 2], [3]], "echo": true, "max_tokens": 0, "logprobs": 1, "temperature": 0}`), false)
	if err != nil || len(r.Prompts) != 2 || len(r.Prompts[0].IDs) != 2 || r.Prompts[1].IDs[0] != 3 || *r.MaxTokens != 0 {
		t.Errorf("batch of ids %+v, %v", r, err)
	}
	r, err = Parse([]byte(`{"prompt": ["a", "", [5]]}`), false)
	if err != nil || len(r.Prompts) != 3 || r.Prompts[0].Text != "a" || r.Prompts[1].IDs != nil || r.Prompts[2].IDs[0] != 5 {
		t.Errorf("mixed batch %+v, %v", r, err)
	}
	for _, c := range []struct {
		body  string
		chat  bool
		field string
	}{
		{`{"messages": []}`, true, "messages"},
		{`{"messages": [{"content": "x"}]}`, true, "messages[0].role"},
		{`{"messages": [{"role": "user", "content": "x"}, {"role": "function", "name": "f", "content": "42"}]}`, true, "messages[1].role"},
		{`{"messages": [{"role": "wizard", "content": "x"}]}`, true, "messages[0].role"},
		{`{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}`, true, "messages[0].content[0].type"},
		{`{"messages": [{"role": "user", "content": 5}]}`, true, "messages[0].content"},
		{`{"prompt": "x", "temperature": 3}`, false, "temperature"},
		{`{"prompt": "x", "top_p": 0}`, false, "top_p"},
		{`{"prompt": "x", "max_tokens": 0}`, false, "max_tokens"},
		{`{"prompt": "x", "max_completion_tokens": 5, "max_tokens": -5}`, false, "max_tokens"},
		{`{"prompt": "x", "n": 0}`, false, "n"},
		{`{"prompt": "x", "ignore_eos": 1}`, false, "ignore_eos"},
		{`{"prompt": "x", "stop": ["a", 1]}`, false, "stop"},
		{`{"prompt": "x", "logprobs": 9}`, false, "logprobs"},
		{`{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}`, true, "top_logprobs"},
		{`{"prompt": "x", "stream": "yes"}`, false, "stream"},
		{`{"prompt": "x", "stream_options": {"include_usage": 1}}`, false, "stream_options.include_usage"},
		// OpenAI and vLLM answer 400 to stream_options without stream.
		{`{"prompt": "x", "stream_options": {"include_usage": true}}`, false, "stream_options"},
		{`{"prompt": "x", "stream": false, "stream_options": {"include_usage": true}}`, false, "stream_options"},
		{`{"messages": [{"role": "user", "content": "x"}], "stream_options": {}}`, true, "stream_options"},
		{`{"prompt": {"a": 1}}`, false, "prompt"},
		{`{"prompt": []}`, false, "prompt"},
		{`{"prompt": [[1], []]}`, false, "prompt[1]"},
		{`{"prompt": ["a", 1.5]}`, false, "prompt[1]"},
		{`{"prompt": [[1], {"a": 1}]}`, false, "prompt[1]"},
		{`{"prompt": [null]}`, false, "prompt[0]"},
		{`{"prompt": "x", "logit_bias": [1]}`, false, "logit_bias"},
		{`{"prompt": "x", "logit_bias": {"a": 1}}`, false, "logit_bias"},
		{`{"prompt": "x", "logit_bias": {"5": 101}}`, false, "logit_bias"},
		{`{"prompt": "x", "logit_bias": {"5": "1"}}`, false, "logit_bias"},
		{`{"prompt": "x", "stop_token_ids": [1, null]}`, false, "stop_token_ids"},
		{`{"prompt": "x", "stop_token_ids": [-5]}`, false, "stop_token_ids"},
		{`{"prompt": "x", "min_tokens": -1}`, false, "min_tokens"},
		{`{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "regex", "regex": "a+"}}`, true, "response_format.type"},
		{`{"messages": [{"role": "user", "content": "x"}], "response_format": {"json_schema": {}}}`, true, "response_format.type"},
		{`{"messages": [{"role": "user", "content": "x"}], "response_format": "json"}`, true, "response_format"},
		{`{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}}`, true, "response_format.json_schema"},
		{`{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": 5}}}`, true, "response_format.json_schema.name"},
		{`{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": "a", "strict": "yes"}}}`, true, "response_format.json_schema.strict"},
		{`{"prompt": "x", "suffix": "end"}`, false, "suffix"},
		{`{"prompt": "x", "best_of": 3}`, false, "best_of"},
		{`{"prompt": "x", "guided_json": 5}`, false, "guided_json"},
		{`{"prompt": "x", "guided_json": "{not json"}`, false, "guided_json"},
		{`{"prompt": "x", "guided_choice": []}`, false, "guided_choice"},
		{`{"prompt": "x", "guided_choice": ["a", ""]}`, false, "guided_choice"},
		{`{"prompt": "x", "guided_regex": 5}`, false, "guided_regex"},
		{`{"prompt": "x", "guided_regex": ""}`, false, "guided_regex"},
		{`{"prompt": "x", "guided_choice": ["a"], "guided_regex": "a+"}`, false, "guided_regex"},
		{`{"prompt": "x", "guided_grammar": "root ::= \"a\""}`, false, "guided_grammar"},
		{`{"prompt": "x", "structured_outputs": {"regex": ["a+"]}}`, false, "structured_outputs.regex"},
		{`{"prompt": "x", "structured_outputs": {"regex": "a", "choice": ["a"]}}`, false, "structured_outputs"},
		{`{"prompt": "x", "structured_outputs": {"grammar": "root ::= x"}}`, false, "structured_outputs.grammar"},
		{`{"prompt": "x", "structured_outputs": {"json": {}, "choice": ["a"]}}`, false, "structured_outputs"},
		{`{"prompt": "x", "structured_outputs": {"json_object": false}}`, false, "structured_outputs.json_object"},
		{`{"prompt": "x", "response_format": {"type": "json_object"}, "guided_choice": ["a"]}`, false, "guided_choice"},
		{`{"prompt": [[1], null]}`, false, "prompt[1]"},
		{`{"prompt": [[1, null]]}`, false, "prompt[0]"},
		{`{"prompt": "x", "max_tokens": 0, "echo": false}`, false, "max_tokens"},
		{`{"prompt": "x", "max_tokens": -1, "echo": true}`, false, "max_tokens"},
		{`{"prompt": "x", "seed": 1.5}`, false, "seed"},
		{`{"prompt": "x", "seed": "5"}`, false, "seed"},
		{`{"prompt": "x", "seed": 9223372036854775808}`, false, "seed"},
		{`{"prompt": "x", "n": "2"}`, false, "n"},
	} {
		_, err := Parse([]byte(c.body), c.chat)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want an error naming %s", c.body, err, c.field)
		}
	}
	// response_format: the schema the output must match.
	for _, c := range []struct{ rf, want string }{
		{`{"type": "text"}`, ""},
		{`null`, ""},
		{`{"type": "json_object"}`, string(JSONObject)},
		{`{"type": "json_schema", "json_schema": {"name": "p", "strict": true, "schema": {"type": "integer"}}}`, `{"type": "integer"}`},
		{`{"type": "json_schema", "json_schema": {"name": "any"}}`, `true`},
	} {
		r, err := Parse([]byte(`{"prompt": "x", "response_format": `+c.rf+`}`), false)
		if err != nil {
			t.Errorf("response_format %s: %v", c.rf, err)
			continue
		}
		if string(r.Schema) != c.want {
			t.Errorf("response_format %s: schema %s, %v, want %s", c.rf, r.Schema, err, c.want)
		}
	}
	// vLLM's guided decoding fields.
	for _, c := range []struct {
		body, schema, field string
		choice              []string
		regex               string
	}{
		{`"guided_json": {"type": "integer"}`, `{"type": "integer"}`, "guided_json", nil, ""},
		{`"guided_json": "{\"type\": \"integer\"}"`, `{"type": "integer"}`, "guided_json", nil, ""},
		{`"guided_choice": ["yes", "no"]`, "", "guided_choice", []string{"yes", "no"}, ""},
		{`"structured_outputs": {"json": {"type": "string"}}`, `{"type": "string"}`, "structured_outputs.json", nil, ""},
		{`"structured_outputs": {"choice": ["a"]}`, "", "structured_outputs.choice", []string{"a"}, ""},
		{`"structured_outputs": {"json_object": true}`, string(JSONObject), "structured_outputs.json_object", nil, ""},
		{`"guided_regex": "\\d+(a|b)"`, "", "guided_regex", nil, `\d+(a|b)`},
		{`"structured_outputs": {"regex": "[^x]"}`, "", "structured_outputs.regex", nil, "[^x]"},
	} {
		r, err := Parse([]byte(`{"prompt": "x", `+c.body+`}`), false)
		if err != nil {
			t.Errorf("%s: %v", c.body, err)
			continue
		}
		if string(r.Schema) != c.schema || !slices.Equal(r.Choice, c.choice) || r.Regex != c.regex || r.SchemaField != c.field {
			t.Errorf("%s: schema %s choice %q regex %q field %s, want %s %q %q %s", c.body, r.Schema, r.Choice, r.Regex, r.SchemaField, c.schema, c.choice, c.regex, c.field)
		}
	}
	// stream_options null is no option given.
	if r, err := Parse([]byte(`{"prompt": "x", "stream_options": null}`), false); err != nil || r.Stream {
		t.Errorf("stream_options null without stream: %+v, %v, want it accepted", r, err)
	}
	if _, err := Parse([]byte(`[1]`), false); err == nil || err.Error() != "the body is a JSON array, want an object" {
		t.Errorf("a JSON array body: %v, want the body is a JSON array, want an object", err)
	}
	// A chat has no echo: its max_tokens error does not offer it.
	_, err = Parse([]byte(`{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}`), true)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "max_tokens" || strings.Contains(err.Error(), "echo") {
		t.Errorf("chat max_tokens 0: %v, want a max_tokens error without echo", err)
	}
	if _, err := Parse([]byte(`{"prompt": "x", "max_tokens": 0}`), false); err == nil || !strings.Contains(err.Error(), "0 only with echo") {
		t.Errorf("completion max_tokens 0: %v, want one offering echo", err)
	}
	many := make([]string, MaxPrompts+1)
	for i := range many {
		many[i] = `"a"`
	}
	if _, err := Parse([]byte(`{"prompt": [`+strings.Join(many, ",")+`]}`), false); err == nil {
		t.Errorf("%d prompts were accepted", len(many))
	}
}
