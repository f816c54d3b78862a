package jinja

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
)

// FromJSON decodes one JSON text into a Render input as Python's
// json.loads does for transformers' apply_chat_template (a chat request's
// tools, a tool call's arguments): objects are Dicts in their keys'
// order, integers int (a *big.Int past int64), other numbers float, and strings but keys Data where
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
		if !strings.ContainsAny(string(x), ".eE") {
			// An integer past int64, an int as json.loads reads it
			// (within Python's limit on an int's digits).
			digits := strings.TrimPrefix(string(x), "-")
			if len(digits) > maxStrDigits {
				return nil, fmt.Errorf("Exceeds the limit (%d digits) for integer string conversion: value has %d digits; use sys.set_int_max_str_digits() to increase the limit", maxStrDigits, len(digits))
			}
			b, _ := new(big.Int).SetString(string(x), 10)
			return b, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, err
		}
		return f, nil // past float64's range: an infinity or zero, as Python's float()
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
