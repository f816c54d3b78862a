package publish

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// Branch is one row of a GPTQ branch table (docs: ../shared/docs/branches.md):
// a named set of quantization parameters, written to OUT/<Name>/.
type Branch struct {
	Name         string  `json:"name"`
	Bits         int     `json:"bits"`
	GroupSize    int     `json:"group_size"`
	DescAct      bool    `json:"desc_act"`
	Damp         float64 `json:"damp_percent"`
	StaticGroups bool    `json:"static_groups,omitempty"`
	Description  string  `json:"description,omitempty"`
}

// PublishedBranches is the openchat-3.5-1210 GPTQ branch table as published,
// in its published order.
var PublishedBranches = []Branch{
	{"main", 4, 128, true, 0.1, false, "4-bit, with Act Order and group size 128g. Uses even less VRAM than 64g, but with slightly lower accuracy."},
	{"gptq-4bit-32g-actorder_True", 4, 32, true, 0.1, false, "4-bit, with Act Order and group size 32g. Gives highest possible inference quality, with maximum VRAM usage."},
	{"gptq-8bit--1g-actorder_True", 8, -1, true, 0.1, false, "8-bit, with Act Order. No group size, to lower VRAM requirements."},
	{"gptq-8bit-128g-actorder_True", 8, 128, true, 0.1, false, "8-bit, with group size 128g for higher inference quality and with Act Order for even higher accuracy."},
	{"gptq-8bit-32g-actorder_True", 8, 32, true, 0.1, false, "8-bit, with group size 32g and Act Order for maximum inference quality."},
	{"gptq-4bit-64g-actorder_True", 4, 64, true, 0.1, false, "4-bit, with Act Order and group size 64g. Uses less VRAM than 32g, but with slightly lower accuracy."},
}

// branchName matches the Hub naming scheme gptq-<bits>bit-<gs>g-actorder_<True|False>.
var branchName = regexp.MustCompile(`^gptq-([2348])bit-(-1|[1-9][0-9]*)g-actorder_(True|False)$`)

// ParseBranch resolves a branch name: a name of the published table, or any
// name of the form gptq-<bits>bit-<gs>g-actorder_<True|False> (damp 0.1, as
// the published table).
func ParseBranch(name string) (Branch, error) {
	for _, b := range PublishedBranches {
		if b.Name == name {
			return b, nil
		}
	}
	m := branchName.FindStringSubmatch(name)
	if m == nil {
		known := make([]string, len(PublishedBranches))
		for i, b := range PublishedBranches {
			known[i] = b.Name
		}
		return Branch{}, fmt.Errorf("unknown branch %q: use one of %s, a name like gptq-4bit-128g-actorder_False, or a branches file", name, strings.Join(known, ", "))
	}
	bits, _ := strconv.Atoi(m[1])
	gs, _ := strconv.Atoi(m[2])
	b := Branch{Name: name, Bits: bits, GroupSize: gs, DescAct: m[3] == "True", Damp: 0.1}
	b.Description = b.describe()
	return b, nil
}

func (b Branch) describe() string {
	gs := "no group size"
	if b.GroupSize > 0 {
		gs = fmt.Sprintf("group size %dg", b.GroupSize)
	}
	act := "without Act Order"
	if b.DescAct {
		act = "with Act Order"
	}
	return fmt.Sprintf("%d-bit, %s, %s.", b.Bits, act, gs)
}

// ParseBranches resolves a --branches value: a comma-separated list of names
// where "all" stands for the whole published table, or the path of a JSON file holding an array
// of Branch objects (custom sets).
func ParseBranches(spec string) ([]Branch, error) {
	if strings.HasSuffix(spec, ".json") {
		data, err := os.ReadFile(spec)
		if err != nil {
			return nil, fmt.Errorf("branches file: %w", err)
		}
		// A misspelt key ("act_order", "group") would otherwise quantize
		// with its default silently.
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		var bs []Branch
		if err := dec.Decode(&bs); err != nil {
			var te *json.UnmarshalTypeError
			switch {
			case errors.As(err, &te) && te.Field != "":
				return nil, fmt.Errorf("branches file %s: %s: got %s, want %s", spec, te.Field, te.Value, jsonKind(te.Type.Kind()))
			case errors.As(err, &te):
				return nil, fmt.Errorf("branches file %s: got %s, want an array of branches %s", spec, te.Value, branchKeys)
			case strings.HasPrefix(err.Error(), "json: unknown field "):
				return nil, fmt.Errorf("branches file %s: %s: want the keys %s", spec, strings.TrimPrefix(err.Error(), "json: "), branchKeys)
			}
			return nil, fmt.Errorf("branches file %s: %w", spec, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, fmt.Errorf("branches file %s: more after the array of branches (offset %d)", spec, dec.InputOffset())
		}
		if len(bs) == 0 {
			return nil, fmt.Errorf("branches file %s: no branches", spec)
		}
		seen := map[string]bool{}
		for i := range bs {
			b := &bs[i]
			if b.Name == "" || strings.ContainsAny(b.Name, `/\`) || b.Name == "." || b.Name == ".." {
				return nil, fmt.Errorf("branches file %s: branch %d: name %q is not a valid directory name", spec, i, b.Name)
			}
			if why := reservedName(b.Name); why != "" {
				return nil, fmt.Errorf("branches file %s: branch %d: name %q %s: choose another", spec, i, b.Name, why)
			}
			if seen[b.Name] {
				return nil, fmt.Errorf("branches file %s: branch %q appears twice", spec, b.Name)
			}
			seen[b.Name] = true
			if b.Damp == 0 {
				b.Damp = 0.01
			}
			if b.GroupSize == 0 {
				return nil, fmt.Errorf("branches file %s: branch %q: group_size must be -1 or positive", spec, b.Name)
			}
			if b.Description == "" {
				b.Description = b.describe()
			}
		}
		return bs, nil
	}
	var bs []Branch
	seen := map[string]bool{}
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		names := []string{name}
		if name == "all" {
			names = names[:0]
			for _, b := range PublishedBranches {
				names = append(names, b.Name)
			}
		}
		for _, name := range names {
			if seen[name] {
				return nil, fmt.Errorf("branch %q given twice", name)
			}
			seen[name] = true
			b, err := ParseBranch(name)
			if err != nil {
				return nil, err
			}
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		return nil, fmt.Errorf("no branches in %q", spec)
	}
	return bs, nil
}

// branchKeys lists the keys of a branches file's objects: Branch's JSON
// names, in its fields' order, so that the list cannot drift from what the
// decoder takes.
var branchKeys = func() string {
	t := reflect.TypeFor[Branch]()
	var keys []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			keys = append(keys, strconv.Quote(name))
		}
	}
	return "{" + strings.Join(keys, ", ") + "}"
}()

// jsonKind names the JSON value a Go kind is read from.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	}
	return k.String()
}

// reservedName says why name cannot be a branch of a table (OUT/<name>/)
// though it is a valid directory name, or "": it is a file the table
// writes beside its branches, it would read as a branch's partial output,
// or git refuses it as a branch name (a leading dot).
func reservedName(name string) string {
	switch {
	case strings.EqualFold(name, "README.md"):
		return "is the table's model card (OUT/README.md)"
	case name == tableFile:
		return "is the table's record of an interrupted run"
	case strings.HasSuffix(name, ".partial"):
		return "ends in .partial, the suffix of a checkpoint being built"
	case strings.HasPrefix(name, "."):
		return "starts with a dot (a hidden directory, and no git branch name)"
	}
	return ""
}
