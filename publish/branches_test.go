package publish_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/publish"
)

// TestParseBranchesFile checks that a branches file's misspelt key, value of
// the wrong type or trailing data is refused naming the key, where a
// misspelt key ("act_order" for desc_act) quantized with its default
// silently and the others read as Go's "cannot unmarshal ... into Go struct
// field Branch.bits of type int" (a QA pass).
func TestParseBranchesFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, json, want string }{
		{"misspelt key", `[{"name":"a","bits":4,"group_size":128,"act_order":true}]`, `unknown field "act_order": want the keys {"name", "bits", "group_size", "desc_act"`},
		{"string bits", `[{"name":"a","bits":"4","group_size":128}]`, "bits: got string, want an integer"},
		{"string desc_act", `[{"name":"a","bits":4,"group_size":128,"desc_act":"yes"}]`, "desc_act: got string, want true or false"},
		{"object", `{"name":"a","bits":4,"group_size":128}`, "got object, want an array of branches"},
		{"trailing data", `[{"name":"a","bits":4,"group_size":128}] []`, "more after the array of branches"},
		// Names that collide with what the table writes beside its
		// branches, or with a partial output's name, or that git refuses
		// as a branch: README.md was quantized in full, then the table's
		// card failed on its directory, leaving a temporary file (a QA
		// pass).
		{"card name", `[{"name":"README.md","bits":4,"group_size":128}]`, `name "README.md" is the table's model card`},
		{"record name", `[{"name":"gptqtool-table.json","bits":4,"group_size":128}]`, `name "gptqtool-table.json" is the table's record`},
		{"partial name", `[{"name":"a.partial","bits":4,"group_size":128}]`, `name "a.partial" ends in .partial`},
		{"hidden name", `[{"name":".git","bits":4,"group_size":128}]`, `name ".git" starts with a dot`},
		{"valid", `[{"name":"a","bits":4,"group_size":128,"desc_act":true}]` + "\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".json")
			if err := os.WriteFile(path, []byte(c.json), 0o644); err != nil {
				t.Fatal(err)
			}
			bs, err := publish.ParseBranches(path)
			if c.want == "" {
				if err != nil || len(bs) != 1 || !bs[0].DescAct || bs[0].GroupSize != 128 {
					t.Fatalf("ParseBranches = %+v, %v, want one 4-bit g128 act-order branch", bs, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("ParseBranches = %v, want an error naming %s and saying %q", err, path, c.want)
			}
		})
	}
}
