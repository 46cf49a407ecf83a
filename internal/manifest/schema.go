package manifest

import (
	"bytes"
	_ "embed"
)

//go:embed schema.json
var schema []byte

// Schema returns the manifest's JSON Schema (draft 2020-12), for editors and
// `batch schema`. It describes what Parse accepts; the checks a schema
// cannot express (sizes and steps per engine, placeholders, unique ids)
// are Parse's alone. The caller gets its own copy.
func Schema() []byte { return bytes.Clone(schema) }
