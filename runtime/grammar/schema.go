package grammar

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// kind is what a node matches.
type kind uint8

const (
	kObject  kind = iota // '{' ... '}'
	kArray               // '[' ... ']'
	kString              // '"' ... '"'
	kNumber              // a JSON number (integer: no fraction or exponent)
	kLiteral             // one of lits
	kUnion               // one of alts
	kRegex               // a raw text that re accepts (Regex)
	kSeq                 // seq's parts in order, then loop's any number of times (Sequence)
)

// node is a compiled schema. Nodes form a graph (a $ref may recur).
type node struct {
	id   int
	kind kind
	// kObject: the properties in the schema's order; extra, where non-nil,
	// takes keys of any name instead (a schema without properties).
	props []prop
	extra *node
	// kArray: items between minItems and maxItems (-1: no bound).
	items              *node
	minItems, maxItems int
	// kString: characters between minLen and maxLen (-1: no bound).
	minLen, maxLen int
	// re, where non-nil, is the automaton of a kString's value (its
	// pattern, format and length bounds, minLen and maxLen then 0 and -1)
	// or of a kRegex's text.
	re *dfa
	// kNumber: integers only.
	integer bool
	// kLiteral: JSON texts, sorted, none a prefix of another unless it
	// is a number.
	lits []string
	// kUnion: alternatives, none a union.
	alts []*node
	// kSeq: the parts (raw texts as kLiteral nodes of one text, and
	// values), then loop's any number of times.
	seq, loop []*node
	// minDepth is the fewest objects and arrays nested in a value of n,
	// n included where it is one (0 for scalars and literals): a
	// container opens only where that fits under MaxDepth.
	minDepth int
	// loose marks a node whose type the schema left out (properties
	// without "type": object): the schema takes values of other types too.
	loose bool
}

// prop is an object property: its key as JSON text (quotes included).
type prop struct {
	name     string
	key      string
	val      *node
	required bool
}

// MaxProperties bounds an object's declared properties (a key's
// candidates are a 64-bit set).
const MaxProperties = 64

// SchemaError is a schema the compiler refuses: Path is the JSON pointer
// of the offending keyword or value.
type SchemaError struct {
	Path string
	Msg  string
}

func (e *SchemaError) Error() string {
	p := e.Path
	if p == "" {
		p = "/"
	}
	return fmt.Sprintf("schema %s: %s", p, e.Msg)
}

// ignored are keywords that describe and do not constrain.
var ignored = map[string]bool{
	"title": true, "description": true, "default": true, "examples": true, "$schema": true, "$id": true,
	"$comment": true, "deprecated": true, "readOnly": true, "writeOnly": true, "strict": true,
	// Definitions are compiled where a $ref reaches them.
	"$defs": true, "definitions": true,
}

// compiler holds a schema's document (for $ref) and the nodes made.
type compiler struct {
	root  *object
	nodes []*node
	refs  map[string]*node
	any   *node // the free-form value, made on first use
	// refPath is the path of each reference's placeholder (errors);
	// oneOfs are the oneOf lists, checked for overlap once every
	// reference is filled in.
	refPath map[*node]string
	oneOfs  []oneOf
	// patterns holds the work and the automata of the strings' patterns
	// and formats.
	patterns *Compiler
}

// Compiler compiles schemas whose patterns share one bound on the work of
// their automata (maxWork) and the automata made (one for each pattern,
// format and length bounds): the schemas of one request, so that it costs
// no more than one schema, however many it sends or repeats. The zero
// value is ready; a Compiler is not safe for concurrent use.
type Compiler struct {
	work budget
	dfas map[stringKey]*dfa
}

// stringKey is what a string's automaton is made of: its pattern and
// format (has: which of them the schema gives) and its length bounds.
type stringKey struct {
	pattern, format string
	has             uint8
	minLen, maxLen  int
}

// oneOf is a oneOf's alternatives, at path.
type oneOf struct {
	alts []*node
	path string
}

// Compile compiles a JSON Schema document into a Grammar over vocab.
func Compile(schema []byte, v *Vocab) (*Grammar, error) {
	return new(Compiler).Compile(schema, v)
}

// Compile compiles a JSON Schema document into a Grammar over vocab, as
// the package's Compile, its patterns within cc's bound.
func (cc *Compiler) Compile(schema []byte, v *Vocab) (*Grammar, error) {
	_, n, err := cc.compile(schema)
	if err != nil {
		return nil, err
	}
	return newGrammar(n, v), nil
}

// Part is one part of a Sequence: a text as it is, (Value) a JSON value
// of the sequence's schema, (Ref) a value of the schema that a local
// reference of the schema names ("#/$defs/x"; the schema must use the
// reference), (Pattern) a raw text that the regular expression matches
// whole (as Regex), or (Alts) the parts of one of several sequences: a
// call of one of several tools, the tool's name in a text and its
// arguments a Ref (Mistral's "[TOOL_CALLS]" NAME "[ARGS]" ARGUMENTS); an
// alternative of no parts makes the others optional.
type Part struct {
	Text    string
	Value   bool
	Ref     string
	Pattern string
	Alts    [][]Part
}

// Sequence makes a Grammar whose output is parts in order, then loop's
// any number of times (none: nil): each text as it is, each value of
// schema as Compile makes it but with no whitespace before or after it
// (the texts say what comes around it). A model's tool-call format is one:
// Hermes' "<tool_call>\n", a call, "\n</tool_call>", and for each further
// call "\n<tool_call>\n", a call, "\n</tool_call>". The texts must not be
// empty, nor parts.
func (cc *Compiler) Sequence(schema []byte, parts, loop []Part, v *Vocab) (*Grammar, error) {
	if len(parts) == 0 {
		return nil, &SchemaError{Msg: "a sequence needs a part"}
	}
	c, val, err := cc.compile(schema)
	if err != nil {
		return nil, err
	}
	// depth is the fewest containers a sequence's values nest (the
	// deepest of its parts').
	var nodes func(ps []Part) ([]*node, int, error)
	nodes = func(ps []Part) ([]*node, int, error) {
		var out []*node
		depth := 0
		for _, p := range ps {
			var n *node
			switch {
			case p.Value:
				n = val
			case p.Ref != "":
				var ok bool
				if n, ok = c.refs[p.Ref]; !ok {
					return nil, 0, &SchemaError{Msg: fmt.Sprintf("a sequence's reference %q: the schema uses none", p.Ref)}
				}
			case p.Pattern != "":
				d, err := compileRegex(p.Pattern, true)
				if err != nil {
					return nil, 0, &RegexError{p.Pattern, err.Error()}
				}
				n = c.newNode(kRegex)
				n.re = d
			case p.Alts != nil:
				var alts []*node
				n = c.newNode(kUnion)
				n.minDepth = MaxDepth + 1
				for _, a := range p.Alts {
					s := c.newNode(kSeq)
					var err error
					if s.seq, s.minDepth, err = nodes(a); err != nil {
						return nil, 0, err
					}
					n.minDepth = min(n.minDepth, s.minDepth)
					alts = append(alts, s)
				}
				if len(alts) == 0 {
					return nil, 0, &SchemaError{Msg: "a sequence's choice has no alternative"}
				}
				n.alts = alts
			case p.Text == "":
				return nil, 0, &SchemaError{Msg: "a sequence's text is empty"}
			default:
				n = c.literal([]string{p.Text})
			}
			depth = max(depth, n.minDepth)
			out = append(out, n)
		}
		return out, depth, nil
	}
	n := c.newNode(kSeq)
	if n.seq, n.minDepth, err = nodes(parts); err != nil {
		return nil, err
	}
	if n.loop, _, err = nodes(loop); err != nil {
		return nil, err
	}
	g := newGrammar(n, v)
	g.raw = true
	return g, nil
}

// compile compiles a schema document: its compiler (the nodes made) and
// root node.
func (cc *Compiler) compile(schema []byte) (*compiler, *node, error) {
	doc, err := decode(schema)
	if err != nil {
		return nil, nil, &SchemaError{Msg: err.Error()}
	}
	c := &compiler{refs: map[string]*node{}, refPath: map[*node]string{}, patterns: cc}
	if m, ok := doc.(*object); ok {
		c.root = m
	}
	n, err := c.compile(doc, "")
	if err != nil {
		return nil, nil, err
	}
	if err := c.flatten(); err != nil {
		return nil, nil, err
	}
	c.depths()
	if n.minDepth > MaxDepth {
		return nil, nil, &SchemaError{Msg: fmt.Sprintf("no value nests fewer than %d objects and arrays", MaxDepth+1)}
	}
	for _, o := range c.oneOfs {
		if err := disjoint(o); err != nil {
			return nil, nil, err
		}
	}
	return c, n, nil
}

// Choice makes a Grammar whose output is exactly one of texts, as they
// are (not JSON; vLLM's guided_choice): no whitespace around it.
func Choice(texts []string, v *Vocab) (*Grammar, error) {
	if len(texts) == 0 || slices.Contains(texts, "") {
		return nil, &SchemaError{Msg: "a choice needs at least one text, none empty"}
	}
	c := &compiler{refs: map[string]*node{}, refPath: map[*node]string{}}
	n := c.literal(slices.Clone(texts))
	g := newGrammar(n, v)
	g.raw = true
	return g, nil
}

// RegexError is a regular expression Regex refuses.
type RegexError struct {
	Pattern string
	Msg     string
}

func (e *RegexError) Error() string { return fmt.Sprintf("regex %q: %s", e.Pattern, e.Msg) }

// Regex makes a Grammar whose output is a text that pattern matches whole
// (vLLM's guided_regex), as it is (not JSON): RE2's syntax, as Go's
// regexp takes it, ^ and $ the text's start and end.
func Regex(pattern string, v *Vocab) (*Grammar, error) {
	d, err := compileRegex(pattern, true)
	if err != nil {
		return nil, &RegexError{pattern, err.Error()}
	}
	c := &compiler{refs: map[string]*node{}, refPath: map[*node]string{}}
	n := c.newNode(kRegex)
	n.re = d
	g := newGrammar(n, v)
	g.raw = true
	return g, nil
}

// stringPattern compiles a string schema's pattern (JSON Schema's: the
// value must contain a match) and format (the value must match it whole)
// into n.re, with n's length bounds, which the automaton then counts.
func (c *compiler) stringPattern(n *node, s map[string]any, path string) error {
	key := stringKey{minLen: n.minLen, maxLen: n.maxLen}
	if v, ok := s["format"]; ok {
		if key.format, ok = v.(string); !ok {
			return &SchemaError{path + "/format", "must be a string"}
		}
		key.has |= 1
	}
	if v, ok := s["pattern"]; ok {
		if key.pattern, ok = v.(string); !ok {
			return &SchemaError{path + "/pattern", "must be a string"}
		}
		key.has |= 2
	}
	if key.has == 0 {
		return nil
	}
	cc := c.patterns
	d, ok := cc.dfas[key]
	if !ok {
		var err error
		if d, err = cc.stringDFA(key, path); err != nil {
			return err
		}
		if cc.dfas == nil {
			cc.dfas = map[stringKey]*dfa{}
		}
		cc.dfas[key] = d
	}
	n.re, n.minLen, n.maxLen = d, 0, -1
	return nil
}

// stringDFA makes the automaton of key, at path.
func (c *Compiler) stringDFA(key stringKey, path string) (*dfa, error) {
	var d *dfa
	if key.has&1 != 0 {
		f, err := formatDFA(key.format)
		if err != nil {
			return nil, &SchemaError{path + "/format", err.Error()}
		}
		d = f
	}
	if key.has&2 != 0 {
		p := key.pattern
		re, err := compileRegexIn(p, false, true, &c.work)
		if err == nil && d != nil {
			re, err = intersect(d, re, &c.work)
			if err != nil {
				err = fmt.Errorf("with format %q: %w", key.format, err)
			}
		}
		if err != nil {
			return nil, &SchemaError{path + "/pattern", fmt.Sprintf("%q: %v", p, err)}
		}
		d = re
	}
	if key.minLen > 0 || key.maxLen >= 0 {
		k := "/maxLength"
		if key.maxLen < 0 {
			k = "/minLength"
		}
		b, err := bounded(d, key.minLen, key.maxLen, &c.work)
		if err != nil {
			return nil, &SchemaError{path + k, fmt.Sprintf("with the pattern or format: %v", err)}
		}
		d = b
	}
	return d, nil
}

// AnyObject is the schema of OpenAI's JSON mode (response_format
// json_object): any JSON object.
const AnyObject = `{"type": "object"}`

func (c *compiler) newNode(k kind) *node {
	n := &node{id: len(c.nodes), kind: k, maxItems: -1, maxLen: -1}
	c.nodes = append(c.nodes, n)
	return n
}

// anyValue is the node of any JSON value.
func (c *compiler) anyValue() *node {
	if c.any != nil {
		return c.any
	}
	u := c.newNode(kUnion)
	c.any = u
	obj := c.newNode(kObject)
	obj.extra = u
	arr := c.newNode(kArray)
	arr.items = u
	lit := c.newNode(kLiteral)
	lit.lits = []string{"false", "null", "true"}
	u.alts = []*node{obj, arr, c.newNode(kString), c.newNode(kNumber), lit}
	return u
}

func (c *compiler) compile(s any, path string) (*node, error) {
	switch s := s.(type) {
	case bool:
		if s {
			return c.anyValue(), nil
		}
		return nil, &SchemaError{path, "false matches nothing"}
	case *object:
		return c.compileObject(s, path)
	}
	return nil, &SchemaError{path, "a schema is an object or a boolean"}
}

// keywords each kind of schema takes besides the ignored ones.
var typeKeywords = map[string][]string{
	"object":  {"properties", "required", "additionalProperties"},
	"array":   {"items", "minItems", "maxItems"},
	"string":  {"minLength", "maxLength", "pattern", "format"},
	"number":  nil,
	"integer": nil,
	"boolean": nil,
	"null":    nil,
}

func (c *compiler) compileObject(o *object, path string) (*node, error) {
	s := o.vals
	if _, ok := s["$id"]; ok && path != "" {
		// (It would make the references inside it resolve against it.)
		return nil, &SchemaError{path + "/$id", "is supported at the root only"}
	}
	if ref, ok := s["$ref"]; ok {
		for k := range s {
			if k != "$ref" && !ignored[k] {
				return nil, &SchemaError{path + "/" + k, "is not supported beside $ref"}
			}
		}
		r, ok := ref.(string)
		if !ok {
			return nil, &SchemaError{path + "/$ref", "must be a string"}
		}
		return c.ref(r, path+"/$ref")
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if _, ok := s[k]; !ok {
			continue
		}
		for o := range s {
			if o != k && !ignored[o] {
				return nil, &SchemaError{path + "/" + o, fmt.Sprintf("is not supported beside %s", k)}
			}
		}
		list, ok := s[k].([]any)
		if !ok || len(list) == 0 {
			return nil, &SchemaError{path + "/" + k, "must be a non-empty array"}
		}
		if k == "allOf" {
			if len(list) != 1 {
				return nil, &SchemaError{path + "/allOf", "only one schema is supported"}
			}
			return c.compile(list[0], path+"/allOf/0")
		}
		// oneOf as anyOf: the output matches at least one alternative,
		// and (checked once references are filled in) at most one, the
		// alternatives sharing no value.
		var alts []*node
		for i, a := range list {
			n, err := c.compile(a, fmt.Sprintf("%s/%s/%d", path, k, i))
			if err != nil {
				return nil, err
			}
			alts = append(alts, n)
		}
		if k == "oneOf" {
			c.oneOfs = append(c.oneOfs, oneOf{alts, path + "/oneOf"})
		}
		return c.union(alts), nil
	}
	for _, k := range []string{"enum", "const"} {
		v, ok := s[k]
		if !ok {
			continue
		}
		for o := range s {
			if o != k && o != "type" && !ignored[o] {
				return nil, &SchemaError{path + "/" + o, fmt.Sprintf("is not supported beside %s", k)}
			}
		}
		vals := []any{v}
		if k == "enum" {
			list, ok := v.([]any)
			if !ok || len(list) == 0 {
				return nil, &SchemaError{path + "/enum", "must be a non-empty array"}
			}
			vals = list
		}
		// A type beside them keeps the values of that type.
		types, err := schemaTypes(s, path)
		if err != nil {
			return nil, err
		}
		var lits []string
		for _, x := range vals {
			if types == nil || slices.ContainsFunc(types, func(t string) bool { return hasType(x, t) }) {
				lits = append(lits, encode(x))
			}
		}
		if len(lits) == 0 {
			return nil, &SchemaError{path + "/" + k, "no value is of the type given"}
		}
		return c.literal(lits), nil
	}
	types, err := schemaTypes(s, path)
	if err != nil {
		return nil, err
	}
	loose := types == nil
	if types == nil {
		switch {
		case s["properties"] != nil || s["additionalProperties"] != nil || s["required"] != nil:
			types = []string{"object"}
		case s["items"] != nil:
			types = []string{"array"}
		}
	}
	// Keywords that no type given here takes are refused by name.
	takes := map[string]bool{"type": true}
	for _, t := range types {
		for _, k := range typeKeywords[t] {
			takes[k] = true
		}
	}
	for _, k := range o.keys {
		if !takes[k] && !ignored[k] {
			if len(types) == 0 {
				return nil, &SchemaError{path + "/" + k, "is not supported (or needs a type)"}
			}
			return nil, &SchemaError{path + "/" + k, fmt.Sprintf("is not supported for type %s", strings.Join(types, ", "))}
		}
	}
	if len(types) == 0 {
		return c.anyValue(), nil
	}
	var alts []*node
	for _, t := range types {
		n, err := c.typed(t, o, path)
		if err != nil {
			return nil, err
		}
		n.loose = loose
		alts = append(alts, n)
	}
	return c.union(alts), nil
}

// schemaTypes reads the type keyword: nil where there is none.
func schemaTypes(s map[string]any, path string) ([]string, error) {
	var types []string
	switch t := s["type"].(type) {
	case nil:
		if _, ok := s["type"]; ok {
			return nil, &SchemaError{path + "/type", "must be a string or an array of strings"}
		}
		return nil, nil
	case string:
		types = []string{t}
	case []any:
		for _, x := range t {
			name, ok := x.(string)
			if !ok {
				return nil, &SchemaError{path + "/type", "must be a string or an array of strings"}
			}
			types = append(types, name)
		}
		if len(types) == 0 {
			return nil, &SchemaError{path + "/type", "must not be empty"}
		}
	default:
		return nil, &SchemaError{path + "/type", "must be a string or an array of strings"}
	}
	for _, t := range types {
		if _, ok := typeKeywords[t]; !ok {
			return nil, &SchemaError{path + "/type", fmt.Sprintf("unknown type %q", t)}
		}
	}
	return types, nil
}

// hasType reports whether decoded value x is of JSON Schema type t (an
// integer is a number whose fraction is zero: 2.0 and 1e2 are).
func hasType(x any, t string) bool {
	switch x := x.(type) {
	case nil:
		return t == "null"
	case bool:
		return t == "boolean"
	case string:
		return t == "string"
	case []any:
		return t == "array"
	case *object:
		return t == "object"
	case json.Number:
		return t == "number" || t == "integer" && integral(string(x))
	}
	return false
}

// integral reports whether JSON number text num has no fraction.
func integral(num string) bool {
	mant, exp := strings.TrimPrefix(num, "-"), int64(0)
	if i := strings.IndexAny(mant, "eE"); i >= 0 {
		e, err := strconv.ParseInt(strings.TrimPrefix(mant[i+1:], "+"), 10, 32)
		if err != nil { // past int32: the sign says which way
			e = math.MaxInt32
			if mant[i+1] == '-' {
				e = math.MinInt32
			}
		}
		mant, exp = mant[:i], e
	}
	ip, fp, _ := strings.Cut(mant, ".")
	// The digits from the point on (at len(ip)+exp) must be zeros.
	return int64(len(strings.TrimRight(ip+fp, "0"))) <= int64(len(ip))+exp
}

// typed compiles s as a schema of type t.
func (c *compiler) typed(t string, o *object, path string) (*node, error) {
	s := o.vals
	switch t {
	case "string":
		n := c.newNode(kString)
		var err error
		if n.minLen, err = count(s, "minLength", 0, path); err != nil {
			return nil, err
		}
		if n.maxLen, err = count(s, "maxLength", -1, path); err != nil {
			return nil, err
		}
		if n.maxLen >= 0 && n.maxLen < n.minLen {
			return nil, &SchemaError{path + "/maxLength", "is below minLength"}
		}
		if err := c.stringPattern(n, s, path); err != nil {
			return nil, err
		}
		return n, nil
	case "number", "integer":
		n := c.newNode(kNumber)
		n.integer = t == "integer"
		return n, nil
	case "boolean":
		return c.literal([]string{"true", "false"}), nil
	case "null":
		return c.literal([]string{"null"}), nil
	case "array":
		n := c.newNode(kArray)
		var err error
		if n.minItems, err = count(s, "minItems", 0, path); err != nil {
			return nil, err
		}
		if n.maxItems, err = count(s, "maxItems", -1, path); err != nil {
			return nil, err
		}
		if n.maxItems >= 0 && n.maxItems < n.minItems {
			return nil, &SchemaError{path + "/maxItems", "is below minItems"}
		}
		if it, ok := s["items"]; ok {
			if n.items, err = c.compile(it, path+"/items"); err != nil {
				return nil, err
			}
		} else {
			n.items = c.anyValue()
		}
		return n, nil
	}
	return c.object(o, path)
}

// object compiles an object schema: its properties in order, or (without
// properties) keys of any name whose values additionalProperties gives.
func (c *compiler) object(o *object, path string) (*node, error) {
	s := o.vals
	n := c.newNode(kObject)
	props, _ := s["properties"].(*object)
	if _, ok := s["properties"]; ok && props == nil {
		return nil, &SchemaError{path + "/properties", "must be an object"}
	}
	if props == nil {
		props = &object{}
	}
	required := map[string]bool{}
	if r, ok := s["required"]; ok {
		list, ok := r.([]any)
		if !ok {
			return nil, &SchemaError{path + "/required", "must be an array of strings"}
		}
		for _, x := range list {
			name, ok := x.(string)
			if !ok {
				return nil, &SchemaError{path + "/required", "must be an array of strings"}
			}
			if _, ok := props.vals[name]; !ok {
				return nil, &SchemaError{path + "/required", fmt.Sprintf("%q is not among the properties", name)}
			}
			required[name] = true
		}
	}
	if len(props.keys) > MaxProperties {
		return nil, &SchemaError{path + "/properties", fmt.Sprintf("%d properties: at most %d are supported", len(props.keys), MaxProperties)}
	}
	// The schema's order is the document's.
	for _, name := range props.keys {
		v, err := c.compile(props.vals[name], path+"/properties/"+escapePointer(name))
		if err != nil {
			return nil, err
		}
		n.props = append(n.props, prop{name: name, key: quote(name), val: v, required: required[name]})
	}
	if len(props.keys) == 0 {
		switch ap := s["additionalProperties"].(type) {
		case nil:
			n.extra = c.anyValue()
		case bool:
			if ap {
				n.extra = c.anyValue()
			}
		default:
			x, err := c.compile(ap, path+"/additionalProperties")
			if err != nil {
				return nil, err
			}
			n.extra = x
		}
	}
	// With properties, additionalProperties (whatever it allows) makes
	// no more keys: the output holds the declared ones.
	return n, nil
}

func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// count reads a non-negative integer keyword, def when absent.
func count(s map[string]any, k string, def int, path string) (int, error) {
	v, ok := s[k]
	if !ok {
		return def, nil
	}
	num, ok := v.(json.Number)
	if ok {
		if i, err := num.Int64(); err == nil && i >= 0 && i <= 1<<20 {
			return int(i), nil
		}
	}
	return 0, &SchemaError{path + "/" + k, "must be a non-negative integer (at most 1048576)"}
}

// literal makes a node of JSON texts.
func (c *compiler) literal(lits []string) *node {
	n := c.newNode(kLiteral)
	slices.Sort(lits)
	n.lits = slices.Compact(lits)
	return n
}

// union makes a node of alternatives, flattening nested unions; one
// alternative is itself.
func (c *compiler) union(alts []*node) *node {
	var flat []*node
	for _, a := range alts {
		if a.kind == kUnion && a.alts != nil {
			flat = append(flat, a.alts...)
		} else {
			flat = append(flat, a)
		}
	}
	if len(flat) == 1 {
		return flat[0]
	}
	n := c.newNode(kUnion)
	n.alts = flat
	return n
}

// ref resolves a local reference (#, #/$defs/x, #/definitions/x, any JSON
// pointer into the document). A reference compiled before is the same node,
// so a recursive schema is a cycle.
func (c *compiler) ref(r, path string) (*node, error) {
	if n, ok := c.refs[r]; ok {
		return n, nil
	}
	if !strings.HasPrefix(r, "#") {
		return nil, &SchemaError{path, fmt.Sprintf("%q: only references into this schema (#...) are supported", r)}
	}
	var target any = c.root
	if c.root == nil || c.root.vals == nil {
		return nil, &SchemaError{path, "the schema is not an object"}
	}
	if p := strings.TrimPrefix(r, "#"); p != "" {
		if !strings.HasPrefix(p, "/") {
			return nil, &SchemaError{path, fmt.Sprintf("%q is not a JSON pointer", r)}
		}
		for _, tok := range strings.Split(p[1:], "/") {
			tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
			m, ok := target.(*object)
			if !ok {
				return nil, &SchemaError{path, fmt.Sprintf("%q: no such definition", r)}
			}
			if target, ok = m.vals[tok]; !ok {
				return nil, &SchemaError{path, fmt.Sprintf("%q: no such definition", r)}
			}
		}
	}
	// A placeholder union stands for the reference while its target
	// compiles, so that a cycle ends at it; it is then filled in.
	ph := c.newNode(kUnion)
	c.refs[r] = ph
	c.refPath[ph] = path
	n, err := c.compile(target, strings.TrimPrefix(r, "#"))
	if err != nil {
		return nil, err
	}
	if n.kind == kUnion {
		ph.alts = n.alts
	} else {
		ph.alts = []*node{n}
	}
	return ph, nil
}

// flatten replaces every union's alternatives by the values they reach
// through unions (placeholders of references included), each once: a
// union that holds itself (a recursive reference) then costs one
// alternative per value, not a tree of unions maxUnion deep. A union that
// reaches no value (a reference to itself and nothing else) is refused.
func (c *compiler) flatten() error {
	leaves := map[*node][]*node{}
	for _, n := range c.nodes {
		if n.kind != kUnion {
			continue
		}
		var out []*node
		seen := map[*node]bool{}
		var walk func(u *node)
		walk = func(u *node) {
			for _, a := range u.alts {
				if seen[a] {
					continue
				}
				seen[a] = true
				if a.kind == kUnion {
					walk(a)
				} else {
					out = append(out, a)
				}
			}
		}
		walk(n)
		if len(out) == 0 {
			return &SchemaError{c.refPath[n], "refers to itself and matches nothing else"}
		}
		leaves[n] = out
	}
	for n, l := range leaves {
		n.alts = l
	}
	return nil
}

// depths sets every node's minDepth (after flatten), to a fixed point: a
// recursive schema's nodes start unbounded and come down.
func (c *compiler) depths() {
	const unbounded = 1 << 20
	for _, n := range c.nodes {
		if n.kind == kObject || n.kind == kArray || n.kind == kUnion {
			n.minDepth = unbounded
		}
	}
	for changed := true; changed; {
		changed = false
		for _, n := range c.nodes {
			d := n.minDepth
			switch n.kind {
			case kObject:
				d = 1
				for _, p := range n.props {
					if p.required {
						d = max(d, 1+p.val.minDepth)
					}
				}
			case kArray:
				d = 1
				if n.minItems > 0 {
					d = 1 + n.items.minDepth
				}
			case kUnion:
				for _, a := range n.alts {
					d = min(d, a.minDepth)
				}
			}
			d = min(d, unbounded)
			if d < n.minDepth {
				n.minDepth, changed = d, true
			}
		}
	}
}

// Types of JSON values, as bits.
const (
	tObject = 1 << iota
	tArray
	tString
	tNumber
	tBoolean
	tNull
)

// valueTypes returns the types of the values n's schema matches (after
// flatten): every type where it gave none.
func valueTypes(n *node) int {
	if n.loose {
		return tObject | tArray | tString | tNumber | tBoolean | tNull
	}
	switch n.kind {
	case kObject:
		return tObject
	case kArray:
		return tArray
	case kString:
		return tString
	case kNumber:
		return tNumber
	case kUnion:
		t := 0
		for _, a := range n.alts {
			t |= valueTypes(a)
		}
		return t
	}
	t := 0
	for _, l := range n.lits {
		t |= litType(l)
	}
	return t
}

// litType is the type of JSON text l.
func litType(l string) int {
	switch l[0] {
	case '{':
		return tObject
	case '[':
		return tArray
	case '"':
		return tString
	case 't', 'f':
		return tBoolean
	case 'n':
		return tNull
	}
	return tNumber
}

// disjoint refuses a oneOf whose alternatives may share a value (a text
// matching two fails oneOf).
func disjoint(o oneOf) error {
	for i, a := range o.alts {
		for _, b := range o.alts[:i] {
			if !apart(a, b, 0) {
				return &SchemaError{o.path, "alternatives that may match one value are not supported (use anyOf)"}
			}
		}
	}
	return nil
}

// apart reports whether no value matches both a and b (false where it
// cannot tell): they are of different types, or lists of strings,
// booleans and null (one text a value) without a text in common, or
// objects that both require a property whose values are apart (a
// discriminated union's tags), or unions whose alternatives are.
func apart(a, b *node, depth int) bool {
	if valueTypes(a)&valueTypes(b) == 0 {
		return true
	}
	if depth > 8 { // (a recursive schema)
		return false
	}
	if a.kind == kUnion || b.kind == kUnion {
		as, bs := []*node{a}, []*node{b}
		if a.kind == kUnion {
			as = a.alts
		}
		if b.kind == kUnion {
			bs = b.alts
		}
		for _, x := range as {
			for _, y := range bs {
				if !apart(x, y, depth+1) {
					return false
				}
			}
		}
		return true
	}
	scalar := func(n *node) bool {
		if n.kind != kLiteral {
			return false
		}
		for _, l := range n.lits {
			if litType(l)&(tString|tBoolean|tNull) == 0 {
				return false
			}
		}
		return true
	}
	if scalar(a) && scalar(b) {
		return !slices.ContainsFunc(a.lits, func(l string) bool { return slices.Contains(b.lits, l) })
	}
	if a.kind == kObject && b.kind == kObject {
		for _, p := range a.props {
			if !p.required {
				continue
			}
			for _, q := range b.props {
				if q.required && q.name == p.name && apart(p.val, q.val, depth+1) {
					return true
				}
			}
		}
	}
	return false
}

// object is a decoded JSON object with its keys in document order: a
// schema's properties are generated in the order they are written.
type object struct {
	keys []string
	vals map[string]any
}

// decode decodes one JSON document into nil, bool, json.Number, string,
// []any and *object values.
func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t {
	case json.Delim('{'):
		o := &object{vals: map[string]any{}}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string)
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			if _, dup := o.vals[k]; !dup {
				o.keys = append(o.keys, k)
			}
			o.vals[k] = v
		}
		_, err := dec.Token() // '}'
		return o, err
	case json.Delim('['):
		list := []any{}
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		_, err := dec.Token() // ']'
		return list, err
	}
	return t, nil
}

// encode writes a decoded value as compact JSON, objects' keys in order:
// an enum's or a const's text as the output holds it.
func encode(v any) string {
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case *object:
			b.WriteByte('{')
			for i, k := range v.keys {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(quote(k))
				b.WriteByte(':')
				walk(v.vals[k])
			}
			b.WriteByte('}')
		case []any:
			b.WriteByte('[')
			for i, x := range v {
				if i > 0 {
					b.WriteByte(',')
				}
				walk(x)
			}
			b.WriteByte(']')
		case string:
			b.WriteString(quote(v))
		default:
			out, _ := json.Marshal(v)
			b.Write(out)
		}
	}
	walk(v)
	return b.String()
}

// quote is s as a JSON string, without json.Marshal's HTML escapes.
func quote(s string) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}
