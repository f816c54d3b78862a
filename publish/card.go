package publish

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gptqtool/gptqtool/formats/gptq"
)

// CardRow is one branch of a model card's table.
type CardRow struct {
	Branch  Branch
	Dataset string
	SeqLen  int
	Bytes   int64 // size of the branch's files, measured
	ExLlama bool
}

// CardInfo describes what the card is about.
type CardInfo struct {
	BaseModel string // name of the source model (its directory name)
	Rows      []CardRow
	Command   string // the command line that made the checkpoints
	Version   string
	// Sym and Format are the checkpoints' sym and checkpoint_format.
	Sym    bool
	Format gptq.Format
	// Skipped lists the Linear modules left unquantized (fp16
	// module.weight); Uniform says the same ones in every layer (written
	// as modules_in_block_to_quantize too); Support is which loaders load
	// them (gptq.SkipSupport).
	Skipped []string
	Uniform bool
	Support []gptq.LoaderSupport
}

// modelID names the model in dir for a model card's base_model and a GGUF
// file's general.name: the Hub id and the repository's name of a Hugging
// Face cache snapshot (.../models--ORG--NAME/snapshots/REV: "ORG/NAME" and
// "NAME"), where the directory's own name is a commit hash; else the
// directory's name, twice.
func modelID(dir string) (id, name string) {
	dir = filepath.Clean(dir)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	base := filepath.Base(dir)
	parent := filepath.Dir(dir)
	if filepath.Base(parent) == "snapshots" {
		if repo, ok := strings.CutPrefix(filepath.Base(filepath.Dir(parent)), "models--"); ok && repo != "" {
			id = strings.ReplaceAll(repo, "--", "/")
			return id, id[strings.LastIndexByte(id, '/')+1:]
		}
	}
	return base, base
}

// zeroPoints says how a checkpoint's zero points are stored (spec §1.4),
// as its model card puts it.
func zeroPoints(sym bool, f gptq.Format) string {
	s := "sym"
	if !sym {
		s = "sym=false"
	}
	if f == gptq.FormatV2 {
		return s + ", GPTQ v2 zeros"
	}
	return s + ", GPTQ v1 zeros"
}

// ModelCard renders a README.md in the form of the published GPTQ model cards:
// the branch table with Bits, GS, Act Order, Damp %, dataset, Seq Len, Size,
// ExLlama compatibility and a description.
func ModelCard(info CardInfo) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "---\nbase_model: %s\nquantized_by: gptqtool %s\ntags:\n- gptq\n---\n\n", info.BaseModel, info.Version)
	fmt.Fprintf(&b, "# %s — GPTQ\n\n", info.BaseModel)
	fmt.Fprintf(&b, "GPTQ quantizations of %s made with gptqtool %s. Each branch is a complete checkpoint in the\n", info.BaseModel, info.Version)
	fmt.Fprintf(&b, "AutoGPTQ format (`quantize_config.json` and `config.json` `quantization_config`, %s):\n", zeroPoints(info.Sym, info.Format))
	b.WriteString("loaders read the parameters from those files; nothing needs to be set by hand.\n\n")
	b.WriteString("| Branch | Bits | GS | Act Order | Damp % | GPTQ dataset | Seq Len | Size | ExLlama | Description |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range info.Rows {
		gs := "None"
		if r.Branch.GroupSize > 0 {
			gs = fmt.Sprint(r.Branch.GroupSize)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %g | %s | %d | %s | %s | %s |\n",
			r.Branch.Name, r.Branch.Bits, gs, yesNo(r.Branch.DescAct), r.Branch.Damp, r.Dataset, r.SeqLen,
			FormatSize(r.Bytes), yesNo(r.ExLlama), r.Branch.Description)
	}
	b.WriteString("\n- GS None means per-channel (`group_size: -1`). Act Order is `desc_act`.\n")
	b.WriteString("- Seq Len is the calibration sequence length; it does not limit the model's context.\n")
	b.WriteString("- Size is the size of the branch's weight files (GB = 10^9 bytes).\n")
	if len(info.Skipped) > 0 {
		skippedSection(&b, info)
	}
	if info.Command != "" {
		fmt.Fprintf(&b, "\nMade with:\n\n```\n%s\n```\n", info.Command)
	}
	return []byte(b.String())
}

// skippedSection lists the modules left in 16-bit and which loaders load
// a checkpoint with them (info.Support).
func skippedSection(b *strings.Builder, info CardInfo) {
	fmt.Fprintf(b, "\n## Modules left unquantized\n\n%d Linear modules are stored in fp16 (`module.weight`), not GPTQ:\n\n", len(info.Skipped))
	for _, n := range info.Skipped {
		fmt.Fprintf(b, "- `%s`\n", n)
	}
	b.WriteString("\nThe configs say so with GPTQModel's `dynamic` key (one `-:` rule per module)")
	if info.Uniform {
		b.WriteString(" and, the same modules being skipped in every layer, optimum's `modules_in_block_to_quantize`")
	}
	b.WriteString(". Which loaders load them (read in each loader's code):\n\n")
	for _, l := range info.Support {
		if l.OK {
			fmt.Fprintf(b, "- %s: loads them (%s).\n", l.Loader, l.Reason)
		} else {
			fmt.Fprintf(b, "- %s: cannot load them: %s.\n", l.Loader, l.Reason)
		}
	}
}

// FormatSize renders bytes as the model cards do: GB (10^9) with two
// decimals, MB below a gigabyte.
func FormatSize(n int64) string {
	if n >= 1e9 {
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	}
	return fmt.Sprintf("%.2f MB", float64(n)/1e6)
}

func yesNo(v bool) string {
	if v {
		return "Yes"
	}
	return "No"
}
