package jinja

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// FromJSON decodes one JSON text into a Render input as Python's
// json.loads does for transformers' apply_chat_template (a chat request's
// tools, a tool call's arguments): objects are Dicts in their keys'
// order, integers int, other numbers float, and strings but keys Data where
// data is set (text a client sent, not template text).
func FromJSON(text []byte, data bool) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	v, err := decodeJSON(dec, data)
	if err != nil {
		return nil, fmt.Errorf("jinja: JSON input: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("jinja: JSON input: more than one value")
	}
	return v, nil
}

func decodeJSON(dec *json.Decoder, data bool) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch x := tok.(type) {
	case json.Delim:
		if x == '[' {
			l := []any{}
			for dec.More() {
				v, err := decodeJSON(dec, data)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			_, err := dec.Token()
			return l, err
		}
		d := NewDict()
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeJSON(dec, data)
			if err != nil {
				return nil, err
			}
			d.Set(k.(string), v)
		}
		_, err := dec.Token()
		return d, err
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		return x.Float64()
	case string:
		if data {
			return Data(x), nil
		}
		return x, nil
	case bool, nil:
		return x, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}
