// Package jinja renders the subset of Jinja2 that Hugging Face chat
// templates (tokenizer_config.json chat_template) use, with the settings
// transformers' apply_chat_template gives jinja2: trim_blocks and
// lstrip_blocks on, one trailing newline of the template dropped, and
// undefined variables as jinja2's default Undefined (falsy, printed as "",
// iterated as empty, an error for anything else).
//
// Supported: text, {{ }}, {% %}, {# #}, {% raw %}, {% print %}, '-' and
// '+' whitespace control; if/elif/else, for (with loop.index, index0,
// revindex, revindex0, first, last, length, previtem, nextitem, depth,
// depth0, cycle(…), changed(…); "for a, (b, c) in" (nested targets in
// set and with too); "for x in xs if c"; break, continue; {% else %},
// rendered, as jinja2 compiles it, when no iteration reached the end of
// the body (none ran, or break or continue ended each); "recursive",
// where loop(items) renders the body over items one level deeper and is
// its output), set (namespace() and ns.attr assignment, "set a, b =",
// block set "{% set x | filters %}…{% endset %}"), macro (defaults,
// varargs, kwargs, caller) and call blocks, filter blocks, and
// transformers' {% generation %}, which renders its body; literals
// (strings with Python escapes, ints, floats, true/false/none, lists,
// tuples, dicts with string, number, bool or none keys), printed as
// Python prints them; x.attr, x['key'], x[i], x[a:b:c]; calls, filters
// and tests with *args (an iterable's items) and **kwargs (a dict's
// entries) after their other arguments, as jinja2 parses them; + - * /
// // ~; ** (left-associative, as jinja2 parses it; a constant negative
// base with an exponent that is not constant is -(|base| ** exp), as
// jinja2's generated code computes it; a whole-number exponent, an int
// for ints, else a float correctly rounded as C's pow); % (modulo, or
// Python's printf-style formatting of a string: "%s" % x, a tuple of
// arguments, "%(name)s" % dict, %%, with flags, width, precision and *
// for the conversions s, r, c, d, i, u, x, X, o, e, E, f, F, g, G; on a
// Markup string, markupsafe's: %s and %r escape what they write, %d and
// %f read a string's number, %c, %x and %o fail, the result is Markup);
// comparisons, and, or, not, in, not in; inline "a if c else b". Ints
// are Python's, unbounded: past int64 exact (a power, a product, a
// literal, the int filter, a JSON input), compared with floats by value,
// printed in full, refused past 131072 bits (a bound, as for strings)
// and, as Python refuses, printed past 4300 digits or made a float past
// float64's range. Tests defined, undefined, none, string, number,
// integer, float, boolean, true, false, mapping, sequence, iterable,
// odd, even, divisibleby, lower, upper, escaped, callable, filter, test,
// sameas (of none, booleans, dicts, namespaces and macros; of ints or
// strings an error, as CPython's caching decides it),
// eq/equalto/ne/lt/lessthan/le/gt/greaterthan/ge, in; filters trim,
// upper, lower, title, capitalize, string, length/count, tojson
// (transformers': json.dumps with ensure_ascii=False, and its
// ensure_ascii, indent, separators and sort_keys), default/d, join
// (attribute= too), first, last, list, map (a filter name, or attribute=
// with default=), select, reject, selectattr, rejectattr, items,
// dictsort, unique, min, max, sort, replace (count too), reverse, int
// (default and base: the default where Python's int() and int(float())
// fail), abs, attr (an attribute, never an item; a call may follow a
// filter: x|attr('f')()), indent, safe, float, round (common, ceil,
// floor), sum (Python 3.11's: floats added one by one), format,
// escape/e, forceescape, wordcount, center, truncate (leeway 5),
// striptags (the entities &amp; &lt; &gt; &quot; &apos; &nbsp; and
// numeric ones; others refused), urlencode, groupby (jinja2's (grouper,
// list) tuples), batch, slice; string methods strip, lstrip, rstrip,
// upper, lower, title, capitalize, startswith, endswith (start and end
// too), split, rsplit, splitlines, replace, join, center, ljust, rjust,
// zfill, find, rfind, index, rindex, count, partition, rpartition,
// removeprefix, removesuffix, isalpha, isalnum, isdecimal, isdigit,
// isnumeric, isspace, islower, isupper, isascii, expandtabs, swapcase,
// format ("{}", "{0}", "{name}", !s, !r, and format specs
// [[fill]align][sign][#][0][width][.precision][type] for strings, ints
// and floats); dict methods items, keys, values, get, copy; list methods
// index, count, copy (tuples index and count); globals raise_exception,
// namespace, range, dict (keywords, a mapping or pairs), joiner, cycler
// (next(), current, reset()) and strftime_now (transformers': the
// clock's local time, or Options.Now, formatted as Python's strftime in
// the C locale); {% with %} (its values evaluated outside, set in a
// scope of its own).
//
// Values behave as jinja2's Python values do where a template can tell:
// map, select, reject, selectattr, rejectattr, unique, items and reverse
// return one-pass iterators (true even when empty, used up by a loop,
// first or in, without length or JSON), dict.items(), keys() and
// values() views (printed as dict_items([…])), range() a range (printed
// as range(0, 3), without JSON), safe a Markup string that HTML-escapes
// what + adds to it (* repeats it, % as above; its str methods as
// markupsafe's: replace, join and the padding ones escape what they add,
// most give Markup; its unescape and striptags; not its format); the
// methods that change a list or a dict are undefined, as in
// transformers' ImmutableSandboxedEnvironment.
//
// Scopes are jinja2's: a for iteration, a macro call, a block set's,
// filter block's and generation's body each have their own, and what is
// set in one is gone after it; a macro reads the names it does not set
// from the scope it was defined in, as they are when it is called.
//
// Anything else (includes, extends, blocks, autoescape, %a and other
// conversions, format specs' grouping (",", "_"), "n", "z" and a float's
// precision without a type, nested fields, keyword arguments to methods
// other than format, printing a generator (Python prints its address),
// other filters, tests, methods and globals) is an *Error naming the
// construct and its line and column, at Parse where the grammar shows
// it, else at Render (a filter when it runs, as a template may hold one
// in a branch it never takes): never a different output.
//
// A render is bounded: a million steps (a statement, a loop iteration,
// 64 bytes of a string or 16 elements of a list an operator, filter or
// call makes, 64 bytes of output, a macro's included, and as much for
// what a comparison, filter, index or method walks: == and in the whole
// of the smaller value, a filter its input's elements, indexing a string
// its bytes), 16 MiB for any string, printed list or dict and for the
// output, a million elements for a list, 131072 bits for an int (an
// operator on ints past int64 counting the product of their words, and
// what it makes as its square); statements, expressions, macro calls
// and recursive loop calls nest at most 1000 deep.
//
// Values keep track of which bytes came from Data inputs (message
// content), through concatenation, slicing, strip, split, join, indent,
// format and % formatting (what a conversion spec from data writes is
// data), striptags and urlencode (data wholly where any input was),
// Markup's escaping, macro arguments and output, block sets
// and filter blocks; a list, dict or JSON text (tojson) printed is data
// wholly where any of it is. Render returns the output as Chunks so that
// a tokenizer can recognise special tokens in template text only.
package jinja
