package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// tokenField is a special token in tokenizer_config.json or
// special_tokens_map.json: a string or {"content": ...}; null means none.
type tokenField struct {
	set     bool
	null    bool
	content string
}

func (f *tokenField) UnmarshalJSON(b []byte) error {
	f.set = true
	if string(b) == "null" {
		f.null = true
		return nil
	}
	if err := json.Unmarshal(b, &f.content); err == nil {
		return nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("want a string or {\"content\": ...}: %w", err)
	}
	f.content = obj.Content
	return nil
}

type specialTokensMap struct {
	BOS tokenField `json:"bos_token"`
	EOS tokenField `json:"eos_token"`
	UNK tokenField `json:"unk_token"`
	PAD tokenField `json:"pad_token"`
}

type tokenizerConfig struct {
	specialTokensMap
	AddBOS       *bool           `json:"add_bos_token"`
	AddEOS       *bool           `json:"add_eos_token"`
	ChatTemplate json.RawMessage `json:"chat_template"`
	AddedDecoder map[string]struct {
		Content    string `json:"content"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		SingleWord bool   `json:"single_word"`
		Special    bool   `json:"special"`
	} `json:"added_tokens_decoder"`
}

// loadConfigs applies special_tokens_map.json and then tokenizer_config.json
// from dir; both are optional. The chat template, from whichever file gave
// it, is parsed once read.
func (t *Tokenizer) loadConfigs(dir string) error {
	if err := t.readConfigs(dir); err != nil {
		return err
	}
	if t.pre != nil && !t.explicitAdd && t.tmplBOS >= 0 {
		// The template's token is what transformers puts first, whatever
		// bos_token says.
		t.bos = t.tmplBOS
	}
	t.compileChatTemplate()
	return nil
}

// readConfigs is loadConfigs before the chat template is parsed.
func (t *Tokenizer) readConfigs(dir string) error {
	var sm specialTokensMap
	smPath := filepath.Join(dir, "special_tokens_map.json")
	if ok, err := readJSON(smPath, &sm); err != nil {
		return err
	} else if ok {
		if err := t.applySpecial(smPath, sm); err != nil {
			return err
		}
	}
	var cfg tokenizerConfig
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	ok, err := readJSON(cfgPath, &cfg)
	if err != nil {
		return err
	}
	if !ok {
		return t.loadChatTemplateFiles(dir, nil, "")
	}
	for key, a := range cfg.AddedDecoder {
		id, err := strconv.Atoi(key)
		if err != nil {
			return fmt.Errorf("tokenizer: %s: added_tokens_decoder key %q: want an integer id", cfgPath, key)
		}
		if err := t.addToken(addedToken{content: a.Content, id: id, special: a.Special, lstrip: a.LStrip, rstrip: a.RStrip, single: a.SingleWord}); err != nil {
			return fmt.Errorf("tokenizer: %s: added_tokens_decoder: %w", cfgPath, err)
		}
	}
	t.finish()
	if err := t.applySpecial(cfgPath, cfg.specialTokensMap); err != nil {
		return err
	}
	if t.pre != nil && (cfg.AddBOS != nil || cfg.AddEOS != nil) {
		// transformers 5 (TokenizersBackend) replaces the template by
		// [bos_token] $A [eos_token] as the two keys say, a missing one
		// false.
		t.explicitAdd = true
		t.addBOS, t.addEOS, t.tmplEOS = false, false, -1
	}
	if cfg.AddBOS != nil {
		t.addBOS, t.bosDecided = *cfg.AddBOS, true
	}
	if cfg.AddEOS != nil {
		t.addEOS, t.eosDecided = *cfg.AddEOS, true
	}
	return t.loadChatTemplateFiles(dir, cfg.ChatTemplate, cfgPath)
}

// setChatTemplate sets the chat template from a chat_template value of
// file: a string, or a list of named templates ("default" the template).
func (t *Tokenizer) setChatTemplate(raw json.RawMessage, file string) error {
	t.chatTemplateFile = filepath.Base(file)
	if err := json.Unmarshal(raw, &t.chatTemplate); err == nil {
		return nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return fmt.Errorf("tokenizer: %s: chat_template: want a string or a list of {name, template}", file)
	}
	for _, n := range named {
		if n.Name == "default" {
			t.chatTemplate = n.Template
		} else {
			t.namedTemplates = append(t.namedTemplates, NamedTemplate{n.Name, n.Template})
		}
	}
	return nil
}

// loadChatTemplateFiles sets the chat template as transformers (4.47 on)
// picks it: chat_template.jinja beside tokenizer_config.json (the file's
// text; additional_chat_templates/NAME.jinja are named templates) takes
// priority over the config's chat_template (cfg, from cfgPath; "the file
// template clobbers any template in the config", transformers'
// test_chat_template_file_priority), which takes priority over
// chat_template.json's chat_template. None of them is no template.
func (t *Tokenizer) loadChatTemplateFiles(dir string, cfg json.RawMessage, cfgPath string) error {
	jinja := filepath.Join(dir, "chat_template.jinja")
	b, err := os.ReadFile(jinja)
	switch {
	case err == nil:
		t.chatTemplate, t.chatTemplateFile = string(b), filepath.Base(jinja)
		extra, _ := filepath.Glob(filepath.Join(dir, "additional_chat_templates", "*.jinja"))
		slices.Sort(extra)
		for _, f := range extra {
			b, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("tokenizer: %w", err)
			}
			t.namedTemplates = append(t.namedTemplates, NamedTemplate{strings.TrimSuffix(filepath.Base(f), ".jinja"), string(b)})
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("tokenizer: %w", err)
	}
	if !isNull(cfg) {
		return t.setChatTemplate(cfg, cfgPath)
	}
	var doc struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	path := filepath.Join(dir, "chat_template.json")
	if ok, err := readJSON(path, &doc); err != nil || !ok || isNull(doc.ChatTemplate) {
		return err
	}
	return t.setChatTemplate(doc.ChatTemplate, path)
}

// readJSON decodes path into v; a missing file gives ok=false and no error.
func readJSON(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tokenizer: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return true, nil
}

func (t *Tokenizer) applySpecial(path string, sm specialTokensMap) error {
	resolve := func(name string, f tokenField, dst *int) error {
		if !f.set {
			return nil
		}
		if f.null {
			*dst = -1
			return nil
		}
		id, ok := t.TokenID(f.content)
		if !ok {
			return fmt.Errorf("tokenizer: %s: %s %q: not in the vocabulary", path, name, f.content)
		}
		*dst = id
		return nil
	}
	if err := resolve("bos_token", sm.BOS, &t.bos); err != nil {
		return err
	}
	if err := resolve("eos_token", sm.EOS, &t.eos); err != nil {
		return err
	}
	unk := int(t.unk)
	if err := resolve("unk_token", sm.UNK, &unk); err != nil {
		return err
	}
	t.unk = int32(unk)
	// pad_token names no token the encoder uses: one outside the
	// vocabulary is no pad token, as gguf-py's SpecialVocab takes it.
	if f := sm.PAD; f.set {
		t.pad = -1
		if id, ok := t.TokenID(f.content); ok && !f.null {
			t.pad = id
		}
	}
	return nil
}
