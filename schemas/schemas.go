package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// BaseURL is the $id prefix of every schema file; a file's $id is BaseURL + its name.
const BaseURL = "https://jetmedia.dev/schemas/events/"

// envelopeFile is shared by every event schema and is not an event type itself.
const envelopeFile = "envelope.json"

// Sentinel errors callers test with errors.Is.
var (
	// ErrNoSchema is returned for an event whose type has no schema file.
	ErrNoSchema = errors.New("schemas: no schema for event type")
	// ErrInvalid is returned for input that is not JSON, not an event, or breaks its schema.
	ErrInvalid = errors.New("schemas: invalid event")
)

//go:embed events/*.json
var files embed.FS

// Validator checks raw events against the compiled schemas. It is immutable after New and safe
// for concurrent use.
type Validator struct {
	byType map[string]*jsonschema.Schema
}

// New compiles every embedded schema. It fails only if a schema file is broken, which the tests
// catch, so callers may treat an error as fatal.
func New() (*Validator, error) {
	sub, err := fs.Sub(files, "events")
	if err != nil {
		return nil, fmt.Errorf("schemas: %w", err)
	}
	return compile(sub)
}

// compile loads every *.json in fsys as a resource at BaseURL+name, then compiles one schema per
// event type (every file but the envelope), named by its file: "<type>.json".
func compile(fsys fs.FS) (*Validator, error) {
	names, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, fmt.Errorf("schemas: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// 2020-12 treats "format" as an annotation unless told otherwise; "time" must be a real
	// date-time.
	c.AssertFormat()
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("schemas: %w", err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", name, err)
		}
		// The file name is the lookup key and relative $refs resolve against $id, so a copied
		// file whose $id was not updated would silently shadow another schema.
		obj, _ := doc.(map[string]any)
		if id, _ := obj["$id"].(string); id != BaseURL+name {
			return nil, fmt.Errorf("schemas: %s: $id is %q, want %q", name, id, BaseURL+name)
		}
		if err := c.AddResource(BaseURL+name, doc); err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", name, err)
		}
	}
	v := &Validator{byType: make(map[string]*jsonschema.Schema, len(names))}
	for _, name := range names {
		if name == envelopeFile {
			continue
		}
		sch, err := c.Compile(BaseURL + name)
		if err != nil {
			return nil, fmt.Errorf("schemas: compile %s: %w", name, err)
		}
		v.byType[strings.TrimSuffix(path.Base(name), ".json")] = sch
	}
	return v, nil
}

// ValidateEvent checks one event in its JSON wire form against the schema for its "type". The
// error wraps ErrNoSchema when the type has no schema, or ErrInvalid (and, for schema failures,
// the library's *jsonschema.ValidationError with every failing keyword) otherwise.
func (v *Validator) ValidateEvent(raw []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("%w: not JSON: %v", ErrInvalid, err)
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: not a JSON object", ErrInvalid)
	}
	typ, ok := obj["type"].(string)
	if !ok {
		return fmt.Errorf("%w: missing or non-string \"type\"", ErrInvalid)
	}
	sch, ok := v.byType[typ]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoSchema, typ)
	}
	if err := sch.Validate(doc); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, typ, err)
	}
	return nil
}

// Types returns the event types that have schemas, sorted.
func (v *Validator) Types() []string {
	return slices.Sorted(maps.Keys(v.byType))
}
