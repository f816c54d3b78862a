package jinja

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// filterValue applies the filter name to v as jinja2 3.1's filter of that
// name computes it (tojson as transformers defines it). Filters that
// return a Python generator or iterator in jinja2 return an *iterator.
func (r *renderer) filterValue(name string, v value, args []value, kw map[string]value) (value, error) {
	if err := r.work(shallow(v)); err != nil {
		return nil, err
	}
	noArgs := func() error {
		if len(args) > 0 || kw != nil {
			return errors.New("takes no arguments")
		}
		return nil
	}
	asStr := func() (str, error) { return toStr(v) } // Undefined is ""
	switch name {
	case "trim", "upper", "lower", "title", "capitalize", "string":
		if name == "trim" {
			if kw != nil || len(args) > 1 {
				return nil, errors.New("takes at most 1 argument")
			}
		} else if err := noArgs(); err != nil {
			return nil, err
		}
		s, err := asStr()
		if err != nil {
			return nil, err
		}
		switch name {
		case "trim":
			chars, set, err := strArg(args, 0, "chars")
			if err != nil {
				return nil, err
			}
			return strip(s, "strip", chars, set), nil
		case "upper":
			return s.mapped(pyUpper(s.s)), nil
		case "lower":
			return s.mapped(pyLower(s.s)), nil
		case "title":
			return s.mapped(jinjaTitle(s.s)), nil
		case "capitalize":
			return s.mapped(capitalize(s.s)), nil
		}
		return s, nil
	case "length", "count":
		if err := noArgs(); err != nil {
			return nil, err
		}
		switch x := seq(v).(type) {
		case str:
			return int64(utf8.RuneCountInString(x.s)), nil
		case markup:
			return int64(utf8.RuneCountInString(x.s)), nil
		case []value:
			return int64(len(x)), nil
		case *Dict:
			return int64(len(x.keys)), nil
		case *view:
			return int64(len(x.items)), nil
		case *loopCtx:
			return x.length, nil
		case undefined:
			return int64(0), nil
		}
		return nil, fmt.Errorf("object of type '%s' has no len()", typeName(v))
	case "tojson":
		return jsonFilter(v, args, kw)
	case "default", "d":
		p, err := bind(args, kw, "default_value", "boolean")
		if err != nil {
			return nil, err
		}
		def := value(str{})
		if len(args) > 0 || kw["default_value"] != nil {
			def = p[0]
		}
		boolean := truthy(p[1])
		if _, ok := v.(undefined); ok || boolean && !truthy(v) {
			return def, nil
		}
		return v, nil
	case "join":
		p, err := bind(args, kw, "d", "attribute")
		if err != nil {
			return nil, err
		}
		sep := str{}
		if p[0] != nil {
			if sep, err = toStr(p[0]); err != nil {
				return nil, err
			}
		}
		items, err := attrItems(v, p[1])
		if err != nil {
			return nil, err
		}
		var out strBuf
		for i, it := range items {
			s, err := toStr(it)
			if err != nil {
				return nil, err
			}
			if out.len()+len(sep.s)+len(s.s) > maxLen {
				return nil, errTooLong
			}
			if i > 0 {
				out.add(sep)
			}
			out.add(s)
		}
		return out.str(), nil
	case "first":
		if err := noArgs(); err != nil {
			return nil, err
		}
		if it, ok := v.(*iterator); ok {
			// next(iter(g)) takes one item of a generator.
			if it.pos < len(it.items) {
				it.pos++
				return it.items[it.pos-1], nil
			}
			return undefined{"No first item, sequence was empty."}, nil
		}
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return undefined{"No first item, sequence was empty."}, nil
		}
		return items[0], nil
	case "last":
		if err := noArgs(); err != nil {
			return nil, err
		}
		if _, ok := v.(*iterator); ok {
			return nil, fmt.Errorf("'%s' object is not reversible", typeName(v))
		}
		items, err := iterate(v) // a dict's last key, as reversed(dict) gives it
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return undefined{"No last item, sequence was empty."}, nil
		}
		return items[len(items)-1], nil
	case "list":
		if err := noArgs(); err != nil {
			return nil, err
		}
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		return slices.Clone(items), nil
	case "map":
		return r.mapFilter(v, args, kw)
	case "select", "reject", "selectattr", "rejectattr":
		return r.selectFilter(name, v, args, kw)
	case "replace":
		// jinja2's do_replace without autoescape: str(s).replace(str(old),
		// str(new), count).
		if len(args) < 2 || len(args) > 3 {
			return nil, errors.New("takes old, new and an optional count")
		}
		for k := range kw {
			if k != "count" || len(args) == 3 {
				return nil, fmt.Errorf("argument %s is not supported", k)
			}
		}
		s, err := asStr()
		if err != nil {
			return nil, err
		}
		old, err := toStr(args[0])
		if err != nil {
			return nil, err
		}
		repl, err := toStr(args[1])
		if err != nil {
			return nil, err
		}
		n := int64(-1)
		cv := kw["count"]
		if len(args) == 3 {
			cv = args[2]
		}
		if cv != nil {
			c, ok := cv.(int64)
			if !ok {
				return nil, fmt.Errorf("count must be an integer, not %s", typeName(cv))
			}
			n = c
		}
		return replace(s, old, repl, n)
	case "reverse":
		// jinja2's do_reverse: a string backwards; reversed(v), an
		// iterator, where Python can reverse v; else a list.
		if err := noArgs(); err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case str:
			rs := []rune(x.s)
			slices.Reverse(rs)
			return x.mapped(string(rs)), nil
		case *iterator:
			out := slices.Clone(x.rest())
			slices.Reverse(out)
			return out, nil
		}
		kind := map[string]string{"list": "list_reverseiterator", "dict": "dict_reversekeyiterator", "dict_keys": "dict_reversekeyiterator", "dict_items": "dict_reverseitemiterator", "dict_values": "dict_reversevalueiterator", "range": "range_iterator"}[typeName(v)]
		if kind == "" {
			kind = "reversed"
		}
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		out := slices.Clone(items)
		slices.Reverse(out)
		return &iterator{kind: kind, items: out}, nil
	case "abs":
		// Python's abs: an int's, a float's, a boolean's as an int.
		if err := noArgs(); err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case bigInt:
			return mkInt(new(big.Int).Abs(x.v))
		case int64:
			if x == math.MinInt64 {
				return mkInt(new(big.Int).Neg(big.NewInt(x)))
			}
			if x < 0 {
				return -x, nil
			}
			return x, nil
		case float64:
			return math.Abs(x), nil
		case bool:
			return b2i(x), nil
		}
		return nil, fmt.Errorf("bad operand type for abs(): %s", typeName(v))
	case "int":
		// jinja2's do_int: int(v) (int(v, base) of a string), else
		// int(float(v)), else default.
		p, err := bind(args, kw, "default", "base")
		if err != nil {
			return nil, err
		}
		def := value(int64(0))
		if len(args) > 0 || kw["default"] != nil {
			def = p[0]
		}
		base := int64(10)
		if p[1] != nil {
			b, ok := intOf(p[1])
			if !ok {
				return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(p[1]))
			}
			base = b
		}
		return pyInt(v, def, base)
	case "items":
		// do_items: a mapping's (key, value) pairs as a generator;
		// undefined has none.
		if err := noArgs(); err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case undefined:
			return &iterator{kind: "generator"}, nil
		case *Dict:
			out := make([]value, len(x.keys))
			for i, k := range x.keys {
				out[i] = tuple{k, x.at(i)}
			}
			return &iterator{kind: "generator", items: out}, nil
		}
		return nil, errors.New("Can only get item pairs from a mapping.")
	case "dictsort":
		return r.dictsort(v, args, kw)
	case "unique":
		return r.unique(v, args, kw)
	case "min", "max":
		return r.minMax(name, v, args, kw)
	case "sort":
		return r.sortFilter(v, args, kw)
	case "safe":
		if err := noArgs(); err != nil {
			return nil, err
		}
		if m, ok := v.(markup); ok {
			return m, nil
		}
		s, err := asStr()
		if err != nil {
			return nil, err
		}
		return markup{s}, nil
	case "indent":
		return indent(v, args, kw)
	case "attr":
		// do_attr: getattr(obj, str(name)), never an item; undefined
		// where there is no such attribute.
		if len(args) != 1 || kw != nil {
			return nil, errors.New("takes one argument, the name")
		}
		n, err := toStr(args[0])
		if err != nil {
			return nil, err
		}
		if d, ok := v.(*Dict); ok {
			switch {
			case isMethod(d, n.s) || pyMethods["dict"][n.s]:
				return method{d, n.s}, nil
			case dictMutators[n.s]:
				return undefined{fmt.Sprintf("access to attribute '%s' of 'dict' object is unsafe.", n.s)}, nil
			}
			return undefined{fmt.Sprintf("'dict object' has no attribute '%s'", n.s)}, nil
		}
		return getAttr(v, n.s, true)
	case "groupby", "float", "round", "sum", "format", "escape", "e", "forceescape", "wordcount", "center", "truncate", "striptags", "urlencode", "batch", "slice":
		return r.moreFilter(name, v, args, kw)
	}
	if jinja2Filters[name] {
		return nil, errors.New("not supported")
	}
	return nil, fmt.Errorf("No filter named '%s' found.", name)
}

// jinja2Filters are jinja2 3.1's filters, to tell one this package does
// not support from one jinja2 does not have either.
var jinja2Filters = map[string]bool{}

func init() {
	for _, f := range strings.Fields("abs attr batch capitalize center count d default dictsort e escape filesizeformat first float forceescape format groupby indent int items join last length list lower map max min pprint random reject rejectattr replace reverse round safe select selectattr slice sort string striptags sum title tojson trim truncate unique upper urlencode urlize wordcount wordwrap xmlattr") {
		jinja2Filters[f] = true
	}
}

// bind binds a filter's arguments to its parameters, as Python binds a
// call: positional ones in order, then keywords by name. A parameter not
// given is nil (none is never a value these parameters take as such).
func bind(args []value, kw map[string]value, names ...string) ([]value, error) {
	if len(args) > len(names) {
		return nil, fmt.Errorf("takes at most %d arguments", len(names))
	}
	out := make([]value, len(names))
	copy(out, args)
	for k, v := range kw {
		i := slices.Index(names, k)
		switch {
		case i < 0:
			return nil, fmt.Errorf("unexpected keyword argument '%s'", k)
		case i < len(args):
			return nil, fmt.Errorf("got multiple values for argument '%s'", k)
		}
		out[i] = v
	}
	return out, nil
}

// attrParts is jinja2's _prepare_attribute_parts: "a.0.b" is the key
// "a", the index 0 and the key "b"; an int is one index.
func attrParts(attr value) ([]value, error) {
	switch a := attr.(type) {
	case nil:
		return nil, nil
	case int64:
		return []value{a}, nil
	case str:
		var parts []value
		for _, p := range strings.Split(a.s, ".") {
			if p != "" && strings.Trim(p, "0123456789") == "" {
				n, err := strconv.ParseInt(p, 10, 64)
				if err != nil {
					return nil, err
				}
				parts = append(parts, n)
			} else {
				parts = append(parts, str{s: p})
			}
		}
		return parts, nil
	}
	return nil, fmt.Errorf("an attribute of type %s is not supported", typeName(attr))
}

// attrGetter is jinja2's make_attrgetter: item looked up by each part of
// attr in turn (x[part], as environment.getitem); def, when not nil,
// replaces an undefined result of a part.
func attrGetter(attr value, def value) (func(value) (value, error), error) {
	parts, err := attrParts(attr)
	if err != nil {
		return nil, err
	}
	return func(item value) (value, error) {
		for _, p := range parts {
			var err error
			if item, err = getItem(item, p); err != nil {
				return nil, err
			}
			if _, u := item.(undefined); u && def != nil {
				item = def
			}
		}
		return item, nil
	}, nil
}

// mapAttr is map(attribute=attr, default=def) of items.
// attrItems is the items of v, or each one's attribute attr where attr is
// not nil (join's and sum's attribute argument).
func attrItems(v, attr value) ([]value, error) {
	items, err := iterate(v)
	if err != nil || attr == nil {
		return items, err
	}
	return mapAttr(items, attr, nil)
}

func mapAttr(items []value, attr, def value) ([]value, error) {
	get, err := attrGetter(attr, def)
	if err != nil {
		return nil, err
	}
	out := make([]value, 0, len(items))
	for _, it := range items {
		x, err := get(it)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// mapFilter is jinja2's map: each item's attribute (attribute=, with
// default=), or each item through a filter; a generator, empty for a
// false value (none too).
func (r *renderer) mapFilter(v value, args []value, kw map[string]value) (value, error) {
	gen := &iterator{kind: "generator"}
	if a, ok := kw["attribute"]; ok && len(args) == 0 {
		for k := range kw {
			if k != "attribute" && k != "default" {
				return nil, fmt.Errorf("unexpected keyword argument '%s'", k)
			}
		}
		if !truthy(v) {
			return gen, nil
		}
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		if gen.items, err = mapAttr(items, a, kw["default"]); err != nil {
			return nil, err
		}
		return gen, nil
	}
	if len(args) < 1 {
		return nil, errors.New("map requires a filter argument")
	}
	fn, ok := args[0].(str)
	if !ok || fn.s == "map" {
		return nil, errors.New("the filter name must be a string")
	}
	if !truthy(v) {
		return gen, nil
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		x, err := r.filterValue(fn.s, it, args[1:], kw)
		if err != nil {
			return nil, err
		}
		gen.items = append(gen.items, x)
	}
	return gen, nil
}

// selectFilter is jinja2's select, reject, selectattr and rejectattr: the
// items (or their attribute) that pass a test, or are true; a generator,
// empty for a false value (none too).
func (r *renderer) selectFilter(name string, v value, args []value, kw map[string]value) (value, error) {
	if kw != nil {
		return nil, errors.New("keyword arguments to tests are not supported")
	}
	get := func(item value) (value, error) { return item, nil }
	if name == "selectattr" || name == "rejectattr" {
		if len(args) < 1 {
			return nil, errors.New("Missing parameter for attribute name")
		}
		var err error
		if get, err = attrGetter(args[0], nil); err != nil {
			return nil, err
		}
		args = args[1:]
	}
	var test string
	if len(args) > 0 {
		tn, ok := args[0].(str)
		if !ok {
			return nil, errors.New("the test name must be a string")
		}
		test, args = tn.s, args[1:]
	}
	gen := &iterator{kind: "generator"}
	if !truthy(v) {
		return gen, nil
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	keep := name == "select" || name == "selectattr"
	for _, it := range items {
		a, err := get(it)
		if err != nil {
			return nil, err
		}
		ok := truthy(a)
		if test != "" {
			if ok, err = r.testValue(test, a, args); err != nil {
				return nil, err
			}
		}
		if ok == keep {
			gen.items = append(gen.items, it)
		}
	}
	return gen, nil
}

// ignoreCase is jinja2's ignore_case: a string lower-cased.
func ignoreCase(v value) value {
	switch x := v.(type) {
	case str:
		return str{s: pyLower(x.s)}
	case markup:
		return str{s: pyLower(x.s)}
	}
	return v
}

// sortBy sorts items stably by key as Python's sorted(items, key=key,
// reverse=reverse) does, or fails as it fails on keys it cannot order.
func (r *renderer) sortBy(items []value, key func(value) (value, error), reverse bool) ([]value, error) {
	keys, sizes, err := r.keys(items, key)
	if err != nil {
		return nil, err
	}
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		if err != nil {
			return 0
		}
		if err = r.work(min(sizes[i], sizes[j])); err != nil {
			return 0
		}
		c, e := pyCompare(keys[i], keys[j])
		if e != nil {
			err = e
		}
		if reverse {
			return -c
		}
		return c
	})
	if err != nil {
		return nil, err
	}
	out := make([]value, len(items))
	for i, o := range order {
		out[i] = items[o]
	}
	return out, nil
}

// keys is each item's key, and the work of comparing it (counted as the
// work of making it, once).
func (r *renderer) keys(items []value, key func(value) (value, error)) ([]value, []int, error) {
	keys := make([]value, len(items))
	sizes := make([]int, len(items))
	limit := (maxSteps - r.steps + 1) * stepBytes
	for i, it := range items {
		k, err := key(it)
		if err != nil {
			return nil, nil, err
		}
		keys[i], sizes[i] = k, deep(k, limit)
		if err := r.work(sizes[i]); err != nil {
			return nil, nil, err
		}
	}
	return keys, sizes, nil
}

// dictsort is jinja2's r.dictsort(case_sensitive=False, by='key',
// reverse=False): a dict's (key, value) pairs sorted, a list.
func (r *renderer) dictsort(v value, args []value, kw map[string]value) (value, error) {
	p, err := bind(args, kw, "case_sensitive", "by", "reverse")
	if err != nil {
		return nil, err
	}
	pos := 0
	if p[1] != nil {
		by, _ := p[1].(str)
		switch by.s {
		case "key":
		case "value":
			pos = 1
		default:
			return nil, errors.New("You can only sort by either 'key' or 'value'")
		}
	}
	d, ok := v.(*Dict)
	if !ok {
		return nil, fmt.Errorf("a %s has no items()", typeName(v))
	}
	items := make([]value, len(d.keys))
	for i, k := range d.keys {
		items[i] = tuple{k, d.at(i)}
	}
	caseSensitive := truthy(p[0])
	return r.sortBy(items, func(item value) (value, error) {
		k := item.(tuple)[pos]
		if !caseSensitive {
			k = ignoreCase(k)
		}
		return k, nil
	}, truthy(p[2]))
}

// unique is jinja2's r.unique(case_sensitive=False, attribute=None): the
// items whose key (the attribute, strings lower-cased) was not seen
// before, as a generator.
func (r *renderer) unique(v value, args []value, kw map[string]value) (value, error) {
	p, err := bind(args, kw, "case_sensitive", "attribute")
	if err != nil {
		return nil, err
	}
	get, err := attrGetter(p[1], nil)
	if err != nil {
		return nil, err
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	keys, _, err := r.keys(items, func(it value) (value, error) {
		k, err := get(it)
		if err != nil || truthy(p[0]) {
			return k, err
		}
		return ignoreCase(k), nil
	})
	if err != nil {
		return nil, err
	}
	gen := &iterator{kind: "generator"}
	seen := map[any]bool{}
	var seenTuples []value
	for i, k := range keys {
		if t, ok := k.(tuple); ok {
			// Tuples are hashable in Python, not as keys here: compared.
			found := false
			for _, s := range seenTuples {
				if found, err = r.eq(s, t); found || err != nil {
					break
				}
			}
			if err != nil {
				return nil, err
			}
			if !found {
				seenTuples = append(seenTuples, t)
				gen.items = append(gen.items, items[i])
			}
			continue
		}
		h, err := hashKey(k)
		if err != nil {
			return nil, err
		}
		if !seen[h] {
			seen[h] = true
			gen.items = append(gen.items, items[i])
		}
	}
	return gen, nil
}

// minMax is jinja2's min and max (case_sensitive=False, attribute=None):
// the first smallest or largest item by its key; undefined for none.
func (r *renderer) minMax(name string, v value, args []value, kw map[string]value) (value, error) {
	p, err := bind(args, kw, "case_sensitive", "attribute")
	if err != nil {
		return nil, err
	}
	get, err := attrGetter(p[1], nil)
	if err != nil {
		return nil, err
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return undefined{"No aggregated item, sequence was empty."}, nil
	}
	keys, sizes, err := r.keys(items, func(it value) (value, error) {
		k, err := get(it)
		if err != nil || truthy(p[0]) {
			return k, err
		}
		return ignoreCase(k), nil
	})
	if err != nil {
		return nil, err
	}
	best := 0
	for i := 1; i < len(items); i++ {
		if err := r.work(min(sizes[i], sizes[best])); err != nil {
			return nil, err
		}
		c, err := pyCompare(keys[i], keys[best])
		if err != nil {
			return nil, err
		}
		if name == "min" && c < 0 || name == "max" && c > 0 {
			best = i
		}
	}
	return items[best], nil
}

// sortFilter is jinja2's sort(reverse=False, case_sensitive=False,
// attribute=None), a list; attribute may name several, "a,b".
func (r *renderer) sortFilter(v value, args []value, kw map[string]value) (value, error) {
	p, err := bind(args, kw, "reverse", "case_sensitive", "attribute")
	if err != nil {
		return nil, err
	}
	var getters []func(value) (value, error)
	attrs := []value{p[2]}
	if a, ok := p[2].(str); ok {
		attrs = nil
		for _, s := range strings.Split(a.s, ",") {
			attrs = append(attrs, str{s: s})
		}
	}
	for _, a := range attrs {
		g, err := attrGetter(a, nil)
		if err != nil {
			return nil, err
		}
		getters = append(getters, g)
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	return r.sortBy(items, func(it value) (value, error) {
		key := make([]value, len(getters))
		for i, g := range getters {
			k, err := g(it)
			if err != nil {
				return nil, err
			}
			if !truthy(p[1]) {
				k = ignoreCase(k)
			}
			key[i] = k
		}
		return key, nil
	}, truthy(p[0]))
}

// jsonFilter is transformers' tojson: json.dumps(v, ensure_ascii=False,
// indent=None, separators=None, sort_keys=False), its arguments in that
// order.
func jsonFilter(v value, args []value, kw map[string]value) (value, error) {
	p, err := bind(args, kw, "ensure_ascii", "indent", "separators", "sort_keys")
	if err != nil {
		return nil, err
	}
	o := defaultJSON
	o.ascii = truthy(p[0])
	o.sortKeys = truthy(p[3])
	switch n := p[1].(type) {
	case nil:
	case int64, bool:
		k, _ := intOf(n)
		if k > maxLen {
			return nil, errTooLong
		}
		o.indented, o.indent, o.itemSep = true, strings.Repeat(" ", int(max(k, 0))), ","
	case str:
		o.indented, o.indent, o.itemSep = true, n.s, ","
	default:
		return nil, fmt.Errorf("indent must be an integer or a string, not %s", typeName(n))
	}
	if p[2] != nil {
		items, ok := seq(p[2]).([]value)
		if !ok || len(items) != 2 {
			return nil, errors.New("separators must be an (item_separator, key_separator) pair")
		}
		a, ok1 := items[0].(str)
		b, ok2 := items[1].(str)
		if !ok1 || !ok2 {
			return nil, errors.New("separators must be strings")
		}
		o.itemSep, o.keySep = a.s, b.s
	}
	var b strings.Builder
	if err := toJSON(&b, v, &o, 0); err != nil {
		return nil, err
	}
	out := str{s: b.String()}
	// Data inside is not tracked through JSON's escapes: the whole is
	// data if any part was, as a printed list is.
	if hasData(v) && b.Len() > 0 {
		out.data = []span{{0, b.Len()}}
	}
	return out, nil
}

// indent is jinja2's indent(width=4, first=False, blank=False): every
// line but the first (first: that too) indented by width spaces (or the
// string width), blank lines only with blank; lines end where Python's
// str.splitlines ends them.
func indent(v value, args []value, kw map[string]value) (value, error) {
	p, err := bind(args, kw, "width", "first", "blank")
	if err != nil {
		return nil, err
	}
	var s str
	isMarkup := false
	switch x := v.(type) {
	case str:
		s = x
	case markup:
		s, isMarkup = x.str, true
	default:
		return nil, fmt.Errorf("can only indent a string, not %s", typeName(v))
	}
	ind := str{s: "    "}
	switch w := p[0].(type) {
	case nil:
	case str:
		ind = w
	case int64, bool:
		n, _ := intOf(w)
		if n > maxLen {
			return nil, errTooLong
		}
		ind = str{s: strings.Repeat(" ", int(max(n, 0)))}
	default:
		return nil, fmt.Errorf("width must be an integer or a string, not %s", typeName(w))
	}
	lines := pySplitLines(concatStr(s, str{s: "\n"}))
	if int64(len(lines))*int64(len(ind.s))+int64(len(s.s)) > maxLen {
		return nil, errTooLong
	}
	nl := str{s: "\n"}
	var out strBuf
	if truthy(p[1]) {
		out.add(ind)
	}
	for i, line := range lines {
		if i > 0 {
			out.add(nl)
			if truthy(p[2]) || line.s != "" {
				out.add(ind)
			}
		}
		out.add(line)
	}
	if isMarkup {
		return markup{out.str()}, nil
	}
	return out.str(), nil
}

// pySplitLines is Python's str.splitlines(): lines without their ends,
// which are \n, \r, \r\n, \v, \f, \x1c, \x1d, \x1e, \x85, U+2028 and
// U+2029; no empty line after a final end.
func pySplitLines(s str) []str {
	var out []str
	start := 0
	for i := 0; i < len(s.s); {
		r, n := utf8.DecodeRuneInString(s.s[i:])
		switch r {
		case '\n', '\r', '\v', '\f', 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
			out = append(out, s.sub(start, i))
			if r == '\r' && i+1 < len(s.s) && s.s[i+1] == '\n' {
				n++
			}
			start = i + n
		}
		i += n
	}
	if start < len(s.s) {
		out = append(out, s.sub(start, len(s.s)))
	}
	return out
}

// escapeHTML is markupsafe's escape: & < > " ' as entities; data stays
// data.
func escapeHTML(s str) str {
	var out strBuf
	for _, c := range chunks(s) {
		t := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(c.Text)
		if c.Data && t != "" {
			out.add(str{s: t, data: []span{{0, len(t)}}})
		} else {
			out.add(str{s: t})
		}
	}
	return out.str()
}
