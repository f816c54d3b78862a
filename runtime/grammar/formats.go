package grammar

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// formats are the string formats (JSON Schema 2020-12 §7.3) the compiler
// honours, as regular expressions a string must match whole. Each makes
// only valid values, some a subset of them:
//
//   - date: RFC 3339 full-date, YYYY-MM-DD, the days of each month, and
//     February 29 in leap years only (the Gregorian rule: years divisible by
//     4, not by 100 unless by 400; year 0000 is one).
//   - time: RFC 3339 full-time, hh:mm:ss, an optional fraction, and an
//     offset, Z or ±hh:mm; T and Z upper case, and no leap second (:60,
//     valid at 23:59 UTC only).
//   - date-time: RFC 3339 date-time, a date, T and a time.
//   - uuid: RFC 4122, 8-4-4-4-12 hex digits of either case.
//   - ipv4: four decimal octets 0-255 without leading zeros.
//   - ipv6: RFC 4291 §2.2 text, :: and a final IPv4 included (RFC 3986's
//     IPv6address), no zone.
//   - hostname: RFC 1123 labels of letters, digits and hyphens (not first
//     or last), at most 8 labels of at most 30 characters each (so that the
//     whole stays within 253 characters).
//   - email: a conservative RFC 5321 mailbox: a dot-atom of letters,
//     digits and _%+- (no dot first, last or twice) of at most 63
//     characters, @, and a domain of 2 to 4 hostname labels.
var formats = map[string]string{
	"date":      date,
	"time":      fullTime,
	"date-time": date + "T" + fullTime,
	"uuid":      `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`,
	"ipv4":      ipv4,
	"ipv6":      ipv6(),
	"hostname":  label + `(?:\.` + label + `){0,7}`,
	"email":     `[A-Za-z0-9_%+-](?:[A-Za-z0-9_%+-]|\.[A-Za-z0-9_%+-]){0,31}@` + label + `(?:\.` + label + `){1,3}`,
}

const (
	// A year divisible by 4: its last two digits are (not 00), or its
	// first two are (a year divisible by 400).
	leapYear = `(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)`
	date     = `(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|` + leapYear + `-02-29)`
	hour     = `(?:[01]\d|2[0-3])`
	fullTime = hour + `:[0-5]\d:[0-5]\d(?:\.\d+)?(?:Z|[+-]` + hour + `:[0-5]\d)`
	octet    = `(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)`
	ipv4     = octet + `(?:\.` + octet + `){3}`
	label    = `[A-Za-z0-9](?:[A-Za-z0-9-]{0,28}[A-Za-z0-9])?`
)

// ipv6 is RFC 3986's IPv6address: 8 groups of 1 to 4 hex digits (the last
// two may be an IPv4 address), or fewer around one "::".
func ipv6() string {
	const h16 = `[0-9a-fA-F]{1,4}`
	ls32 := `(?:` + h16 + `:` + h16 + `|` + ipv4 + `)`
	groups := func(n int) string { // n groups, each followed by ':'
		return strings.Repeat(h16+`:`, n)
	}
	alts := []string{groups(6) + ls32}
	// Before "::", at most k groups; after it, the rest of 8 less one.
	for k := 0; k <= 7; k++ {
		before := ""
		if k > 0 {
			before = `(?:` + h16 + `(?::` + h16 + `){0,` + fmt.Sprint(k-1) + `})?`
		}
		var after string
		switch {
		case k <= 5:
			after = groups(5-k) + ls32
		case k == 6:
			after = h16
		}
		alts = append(alts, before+`::`+after)
	}
	return `(?:` + strings.Join(alts, `|`) + `)`
}

// formatDFAs memoizes each format's automaton (immutable: shared by the
// grammars).
var formatDFAs struct {
	sync.Mutex
	m map[string]*dfa
}

// formatDFA returns the automaton of format name, or an error naming the
// formats there are.
func formatDFA(name string) (*dfa, error) {
	re, ok := formats[name]
	if !ok {
		return nil, fmt.Errorf("%q is not supported (%s are)", name, strings.Join(slices.Sorted(maps.Keys(formats)), ", "))
	}
	formatDFAs.Lock()
	defer formatDFAs.Unlock()
	if d, ok := formatDFAs.m[name]; ok {
		return d, nil
	}
	d, err := compileRegex(re, true)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, err)
	}
	if formatDFAs.m == nil {
		formatDFAs.m = map[string]*dfa{}
	}
	formatDFAs.m[name] = d
	return d, nil
}
