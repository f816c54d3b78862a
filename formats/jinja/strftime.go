package jinja

import (
	"fmt"
	"strconv"
	"time"
)

// strftime is Python's datetime.strftime(format) of a naive datetime (as
// transformers' strftime_now formats datetime.now()) in the C locale, as
// glibc formats it: %z and %Z are empty. A directive outside the common
// ones (flags such as %-d, %E and %O modifiers, %s, %P) is an error, not
// a guess.
func strftime(t time.Time, format string) (string, error) {
	var b []byte
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+1 >= len(format) {
			b = append(b, '%') // a trailing % stays, as glibc leaves it
			continue
		}
		i++
		d := format[i]
		if s, ok := strftimeField(t, d); ok {
			b = append(b, s...)
			continue
		}
		return "", fmt.Errorf("directive %%%c is not supported", d)
	}
	return string(b), nil
}

func pad(n, width int, fill byte) string {
	s := strconv.Itoa(n)
	for len(s) < width {
		s = string(fill) + s
	}
	return s
}

// strftimeField is one directive's text.
func strftimeField(t time.Time, d byte) (string, bool) {
	hour12 := t.Hour() % 12
	if hour12 == 0 {
		hour12 = 12
	}
	switch d {
	case 'a':
		return t.Weekday().String()[:3], true
	case 'A':
		return t.Weekday().String(), true
	case 'b', 'h':
		return t.Month().String()[:3], true
	case 'B':
		return t.Month().String(), true
	case 'c':
		return t.Format("Mon Jan _2 15:04:05 2006"), true
	case 'C':
		return pad(t.Year()/100, 2, '0'), true
	case 'd':
		return pad(t.Day(), 2, '0'), true
	case 'D', 'x':
		return t.Format("01/02/06"), true
	case 'e':
		return pad(t.Day(), 2, ' '), true
	case 'f':
		return pad(t.Nanosecond()/1000, 6, '0'), true
	case 'F':
		return pad(t.Year(), 4, '0') + t.Format("-01-02"), true
	case 'G':
		y, _ := t.ISOWeek()
		return pad(y, 4, '0'), true
	case 'H':
		return pad(t.Hour(), 2, '0'), true
	case 'I':
		return pad(hour12, 2, '0'), true
	case 'j':
		return pad(t.YearDay(), 3, '0'), true
	case 'k':
		return pad(t.Hour(), 2, ' '), true
	case 'l':
		return pad(hour12, 2, ' '), true
	case 'm':
		return pad(int(t.Month()), 2, '0'), true
	case 'M':
		return pad(t.Minute(), 2, '0'), true
	case 'n':
		return "\n", true
	case 'p':
		if t.Hour() < 12 {
			return "AM", true
		}
		return "PM", true
	case 'R':
		return t.Format("15:04"), true
	case 'S':
		return pad(t.Second(), 2, '0'), true
	case 't':
		return "\t", true
	case 'T', 'X':
		return t.Format("15:04:05"), true
	case 'u':
		return strconv.Itoa((int(t.Weekday())+6)%7 + 1), true
	case 'U':
		// Weeks starting on Sunday; days before the first are week 0.
		return pad((t.YearDay()+6-int(t.Weekday()))/7, 2, '0'), true
	case 'V':
		_, w := t.ISOWeek()
		return pad(w, 2, '0'), true
	case 'w':
		return strconv.Itoa(int(t.Weekday())), true
	case 'W':
		// Weeks starting on Monday.
		return pad((t.YearDay()+6-(int(t.Weekday())+6)%7)/7, 2, '0'), true
	case 'y':
		return pad(t.Year()%100, 2, '0'), true
	case 'Y':
		return strconv.Itoa(t.Year()), true
	case 'z', 'Z':
		return "", true
	case '%':
		return "%", true
	}
	return "", false
}
