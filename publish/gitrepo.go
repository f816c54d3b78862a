package publish

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// gitAttributes marks the weight files for Git LFS, as Hugging Face model
// repositories do, so that the repository can be pushed to the Hub once
// git-lfs is set up there.
const gitAttributes = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"

// gitDescription starts the description file of the repositories GitRepo
// makes: IsOurs recognises them by it.
const gitDescription = "gptqtool: GPTQ branches"

// GitRepo makes a bare git repository at repo holding each branch of a
// written table as a git branch of the same name, its checkpoint files at
// the root, as the Hub lays out GPTQ branches; HEAD is "main" when there is
// one, else the first branch. It uses the git command. An existing repo is
// refused unless force, which replaces it.
func GitRepo(ctx context.Context, repo string, branches []BranchSummary, force bool) error {
	if len(branches) == 0 {
		return fmt.Errorf("git repository %s: no branches", repo)
	}
	if _, err := exec.LookPath("git"); err != nil {
		return fmt.Errorf("git repository %s: %w (install git, or drop --git-repo)", repo, err)
	}
	if _, err := os.Stat(repo); err == nil && !force {
		return fmt.Errorf("git repository %s exists (use --force to replace it)", repo)
	}
	// Built beside its place and renamed; the repository is derived from
	// the branch directories, so one left by a killed run is discarded.
	// git resolves GIT_DIR, GIT_WORK_TREE and GIT_INDEX_FILE against the
	// directory it runs in (each branch's), so every path it is given is
	// absolute.
	tmp, err := filepath.Abs(PartialDir(repo))
	if err != nil {
		return err
	}
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	g := gitRunner{ctx: ctx, gitDir: tmp}
	if _, err := g.run(nil, "init", "--quiet", "--bare", tmp); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "description"), []byte(gitDescription+" ("+filepath.Base(filepath.Clean(repo))+")\n"), 0o644); err != nil {
		return err
	}
	attrs, err := g.run([]byte(gitAttributes), "hash-object", "-w", "--stdin")
	if err != nil {
		return err
	}
	head := branches[0].Name
	for _, b := range branches {
		if b.Name == "main" {
			head = "main"
		}
		dir, err := filepath.Abs(b.Dir)
		if err != nil {
			return err
		}
		index := filepath.Join(tmp, "index-"+b.Name)
		steps := [][]string{
			{"add", "--all", "."},
			{"update-index", "--add", "--cacheinfo", "100644," + attrs + ",.gitattributes"},
		}
		for _, args := range steps {
			if _, err := g.runIn(dir, index, args...); err != nil {
				return fmt.Errorf("branch %s: %w", b.Name, err)
			}
		}
		tree, err := g.runIn(dir, index, "write-tree")
		if err != nil {
			return fmt.Errorf("branch %s: %w", b.Name, err)
		}
		msg := fmt.Sprintf("%s: GPTQ %d-bit, group %d, act order %v, damp %g", b.Name, b.Bits, b.GroupSize, b.DescAct, b.Damp)
		commit, err := g.run(nil, "commit-tree", tree, "-m", msg)
		if err != nil {
			return fmt.Errorf("branch %s: %w", b.Name, err)
		}
		if _, err := g.run(nil, "update-ref", "refs/heads/"+b.Name, commit); err != nil {
			return fmt.Errorf("branch %s: %w", b.Name, err)
		}
		os.Remove(index)
	}
	if _, err := g.run(nil, "symbolic-ref", "HEAD", "refs/heads/"+head); err != nil {
		return err
	}
	if err := os.RemoveAll(repo); err != nil { // force, checked by the caller (CheckOut)
		return err
	}
	return os.Rename(tmp, repo)
}

// gitRunner runs git commands on one repository.
type gitRunner struct {
	ctx    context.Context
	gitDir string
}

// run runs git in the repository (no work tree) with stdin.
func (g gitRunner) run(stdin []byte, args ...string) (string, error) {
	return g.exec(stdin, "", "", args...)
}

// runIn runs git on workTree with the index file index.
func (g gitRunner) runIn(workTree, index string, args ...string) (string, error) {
	return g.exec(nil, workTree, index, args...)
}

// exec runs git with stdin, workTree and index (each optional) and returns
// its trimmed standard output.
func (g gitRunner) exec(stdin []byte, workTree, index string, args ...string) (string, error) {
	cmd := exec.CommandContext(g.ctx, "git", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Env = append(os.Environ(),
		"GIT_DIR="+g.gitDir,
		"GIT_AUTHOR_NAME=gptqtool", "GIT_AUTHOR_EMAIL=gptqtool@localhost",
		"GIT_COMMITTER_NAME=gptqtool", "GIT_COMMITTER_EMAIL=gptqtool@localhost",
	)
	if workTree != "" {
		cmd.Env = append(cmd.Env, "GIT_WORK_TREE="+workTree)
		cmd.Dir = workTree
	}
	if index != "" {
		cmd.Env = append(cmd.Env, "GIT_INDEX_FILE="+index)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}
