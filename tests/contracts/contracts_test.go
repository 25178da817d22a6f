// Package contracts turns the import rules of the design (docs/architecture.md, "Where things
// live") and of every package's doc.go into a test. Each package outside cmd/ and tests/ states
// what it may import in its package comment, on one line:
//
//	// Imports: events, pipeline/eventlog, projections
//
// ("none" for no jetmedia package; "x/..." for x and everything under it; an entry the design
// forbids for the package's folder must carry its reason: "egress/forward (exception: why)").
// The test checks that the line is allowed by the design, that the package imports nothing
// else of jetmedia, and that every package the line names is imported, so the docs cannot
// drift from the code.
package contracts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/jetmedia/jetmedia"

// design is the table of docs/architecture.md: what a package under each top-level folder may
// import of jetmedia. cmd/ and tests/ may import anything; nothing else imports them.
var design = map[string][]string{
	"events":      {},                         // the standard library only
	"schemas":     {"events"},                 // validating an event needs its bytes
	"pipeline":    {"events", "pipeline/..."}, // subpackages as their doc.go says
	"projections": {"events", "pipeline/...", "projections/..."},
	"ingress":     {"events", "pipeline/...", "ingress/..."}, // never egress, bar named exceptions
	"egress":      {"events", "pipeline/...", "egress/..."},  // never ingress, bar named exceptions
}

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
}

// rule is one entry of an Imports line.
type rule struct {
	path      string // module-relative
	tree      bool   // path/...
	exception string // the reason, for an entry the design forbids
}

func (r rule) matches(p string) bool {
	return p == r.path || (r.tree && strings.HasPrefix(p, r.path+"/"))
}

func TestImportContracts(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		t.Run(rel, func(t *testing.T) {
			for _, err := range checkPackage(p, rel) {
				t.Error(err)
			}
		})
	}
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; run the test from the module", len(pkgs))
	}
	return pkgs
}

// checkPackage returns every way p breaks its contract.
func checkPackage(p pkg, rel string) []error {
	top, _, _ := strings.Cut(rel, "/")
	ours := jetmediaImports(p.Imports)
	if top == "cmd" || top == "tests" {
		return nil // anything; whether others import them is checked on the others
	}
	var errs []error
	for _, imp := range ours {
		if strings.HasPrefix(imp, "cmd/") || strings.HasPrefix(imp, "tests/") || imp == "cmd" || imp == "tests" {
			errs = append(errs, fmt.Errorf("%s imports %s: nothing outside cmd/ and tests/ may", rel, imp))
		}
	}
	if top == "events" {
		for _, imp := range p.Imports {
			if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
				errs = append(errs, fmt.Errorf("%s imports %s: events imports the standard library only", rel, imp))
			}
		}
	}
	allowed, ok := design[top]
	if !ok {
		return append(errs, fmt.Errorf("%s: top-level folder %q is not in the design's table", rel, top))
	}
	rules, err := importsLine(p)
	if err != nil {
		return append(errs, fmt.Errorf("%s: %w", rel, err))
	}
	design := parseRules(allowed)
	for _, r := range rules {
		if !slices.ContainsFunc(design, func(d rule) bool { return d.matches(r.path) }) && r.exception == "" {
			errs = append(errs, fmt.Errorf("%s: doc.go allows %s, which the design forbids under %s/ (name it as an exception with its reason, or drop it)", rel, r.path, top))
		}
	}
	for _, imp := range ours {
		if !slices.ContainsFunc(rules, func(r rule) bool { return r.matches(imp) }) {
			errs = append(errs, fmt.Errorf("%s imports %s, which its doc.go does not allow (Imports: %s)", rel, imp, describe(rules)))
		}
	}
	for _, r := range rules {
		if !slices.ContainsFunc(ours, r.matches) {
			errs = append(errs, fmt.Errorf("%s: doc.go names %s, which the package does not import: keep the Imports line true", rel, r.path))
		}
	}
	return errs
}

func jetmediaImports(imports []string) []string {
	var out []string
	for _, imp := range imports {
		if imp == module {
			out = append(out, "")
		} else if rel, ok := strings.CutPrefix(imp, module+"/"); ok {
			out = append(out, rel)
		}
	}
	return out
}

var importsRE = regexp.MustCompile(`(?m)^Imports:\s*(.+?)\s*$`)

// importsLine reads the Imports line of the package comment.
func importsLine(p pkg) ([]rule, error) {
	var found []string
	fset := token.NewFileSet()
	for _, name := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return nil, err
		}
		if f.Doc == nil {
			continue
		}
		for _, m := range importsRE.FindAllStringSubmatch(f.Doc.Text(), -1) {
			found = append(found, m[1])
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf(`the package comment (doc.go) has no "Imports:" line saying what the package may import`)
	case 1:
	default:
		return nil, fmt.Errorf("the package comments have %d Imports lines; keep one, in doc.go", len(found))
	}
	line := strings.TrimSuffix(found[0], ".")
	if line == "none" {
		return nil, nil
	}
	return parseRules(splitEntries(line)), nil
}

// splitEntries splits at the commas outside parentheses.
func splitEntries(line string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range line {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(line[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(line[start:]))
}

func parseRules(entries []string) []rule {
	var out []rule
	for _, e := range entries {
		var r rule
		if path, reason, ok := strings.Cut(e, "("); ok {
			e = strings.TrimSpace(path)
			reason = strings.TrimSuffix(strings.TrimSpace(reason), ")")
			if after, ok := strings.CutPrefix(reason, "exception:"); ok {
				r.exception = strings.TrimSpace(after)
			}
		}
		r.path, r.tree = strings.CutSuffix(e, "/...")
		out = append(out, r)
	}
	return out
}

func describe(rules []rule) string {
	if len(rules) == 0 {
		return "none"
	}
	var s []string
	for _, r := range rules {
		if r.tree {
			s = append(s, r.path+"/...")
		} else {
			s = append(s, r.path)
		}
	}
	return strings.Join(s, ", ")
}
