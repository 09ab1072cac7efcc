package events

import (
	"bytes"
	_ "embed"
)

// The JSON Schemas (draft 2020-12) of the two message kinds, for producers
// and for tests. They state the same rules as Validate except those that
// depend on configuration (the project allowlist) or that a schema cannot
// express; the schemas' descriptions list those.
var (
	//go:embed schema/migration-event.schema.json
	migrationEventSchema []byte
	//go:embed schema/cleanup-message.schema.json
	cleanupMessageSchema []byte
)

// SchemaURL and CleanupSchemaURL are the $id of the two schemas; the
// cleanup schema refers to definitions in the migration-event schema by
// this URL, so a validator needs both loaded.
const (
	SchemaURL        = "https://github.com/snapsweep/snapsweep/events/schema/migration-event.schema.json"
	CleanupSchemaURL = "https://github.com/snapsweep/snapsweep/events/schema/cleanup-message.schema.json"
)

// Schema returns the JSON Schema of migration events (a copy).
func Schema() []byte { return bytes.Clone(migrationEventSchema) }

// CleanupSchema returns the JSON Schema of cleanup messages (a copy).
func CleanupSchema() []byte { return bytes.Clone(cleanupMessageSchema) }
