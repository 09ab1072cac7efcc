package events

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileSchemas compiles both embedded schemas with format assertion on
// (draft 2020-12 treats "format" as an annotation unless asked). Compiling
// also checks each schema against the draft's meta-schema.
func compileSchemas(t testing.TB) (event, cleanup *jsonschema.Schema) {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	for url, data := range map[string][]byte{SchemaURL: Schema(), CleanupSchemaURL: CleanupSchema()} {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("parse schema %s: %v", url, err)
		}
		if err := c.AddResource(url, doc); err != nil {
			t.Fatalf("add schema %s: %v", url, err)
		}
	}
	event, err := c.Compile(SchemaURL)
	if err != nil {
		t.Fatalf("compile %s: %v", SchemaURL, err)
	}
	cleanup, err = c.Compile(CleanupSchemaURL)
	if err != nil {
		t.Fatalf("compile %s: %v", CleanupSchemaURL, err)
	}
	return event, cleanup
}

// schemaAccepts reports whether data is JSON that sch accepts, and why not.
func schemaAccepts(sch *jsonschema.Schema, data []byte) (bool, string) {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return false, "not JSON: " + err.Error()
	}
	if err := sch.Validate(inst); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// exampleRejections is what Decode must say about each invalid example;
// every invalid example is listed, so a new one states its rule here.
var exampleRejections = map[string]rejection{
	"invalid-missing-id.json":                          {ReasonMissingField, "id"},
	"invalid-id-too-long.json":                         {ReasonInvalidField, "id"},
	"invalid-id-control-character.json":                {ReasonInvalidField, "id"},
	"invalid-id-wrong-type.json":                       {ReasonInvalidField, "id"},
	"invalid-missing-type.json":                        {ReasonMissingField, "type"},
	"invalid-unknown-type.json":                        {ReasonUnknownType, "type"},
	"invalid-missing-time.json":                        {ReasonMissingField, "time"},
	"invalid-time-not-rfc3339.json":                    {ReasonInvalidField, "time"},
	"invalid-time-lowercase-t.json":                    {ReasonInvalidField, "time"},
	"invalid-time-wrong-type.json":                     {ReasonInvalidField, "time"},
	"invalid-time-no-such-date.json":                   {ReasonInvalidField, "time"},
	"invalid-time-leap-second.json":                    {ReasonInvalidField, "time"},
	"invalid-time-zero.json":                           {ReasonMissingField, "time"},
	"invalid-missing-session-id.json":                  {ReasonMissingField, "sessionId"},
	"invalid-session-id-null.json":                     {ReasonMissingField, "sessionId"},
	"invalid-session-id-uppercase.json":                {ReasonInvalidField, "sessionId"},
	"invalid-session-id-too-long.json":                 {ReasonInvalidField, "sessionId"},
	"invalid-task-id-missing.json":                     {ReasonMissingField, "taskId"},
	"invalid-task-id-too-long.json":                    {ReasonInvalidField, "taskId"},
	"invalid-task-id-not-printable.json":               {ReasonInvalidField, "taskId"},
	"invalid-snapshot-missing.json":                    {ReasonMissingField, "snapshot"},
	"invalid-snapshot-not-object.json":                 {ReasonInvalidField, "snapshot"},
	"invalid-snapshot-project-missing.json":            {ReasonMissingField, "snapshot.project"},
	"invalid-snapshot-project-format.json":             {ReasonInvalidField, "snapshot.project"},
	"invalid-snapshot-project-domain-without-dot.json": {ReasonInvalidField, "snapshot.project"},
	"invalid-snapshot-name-missing.json":               {ReasonMissingField, "snapshot.name"},
	"invalid-snapshot-name-format.json":                {ReasonInvalidField, "snapshot.name"},
	"invalid-snapshot-name-too-long.json":              {ReasonInvalidField, "snapshot.name"},
	"invalid-source-disk-too-long.json":                {ReasonInvalidField, "snapshot.sourceDisk"},
	"invalid-retention-syntax.json":                    {ReasonInvalidField, "snapshot.retention"},
	"invalid-retention-zero.json":                      {ReasonInvalidField, "snapshot.retention"},
	"invalid-retention-negative.json":                  {ReasonInvalidField, "snapshot.retention"},
	"invalid-retention-wrong-type.json":                {ReasonInvalidField, "snapshot.retention"},
	"invalid-error-too-long.json":                      {ReasonInvalidField, "error"},
	"invalid-error-wrong-type.json":                    {ReasonInvalidField, "error"},
	"invalid-not-an-object.json":                       {ReasonBadJSON, ""},
	"invalid-snapshot-id-empty.json":                   {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-zero.json":                    {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-zero-number.json":             {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-leading-zero.json":            {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-sign.json":                    {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-negative-number.json":         {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-not-digits.json":              {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-space.json":                   {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-too-large.json":               {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-too-large-number.json":        {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-fraction.json":                {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-wrong-type.json":              {ReasonInvalidField, "snapshot.id"},
	"invalid-snapshot-id-object.json":                  {ReasonInvalidField, "snapshot.id"},
}

var cleanupExampleRejections = map[string]rejection{
	"invalid-missing-project.json":   {ReasonMissingField, "project"},
	"invalid-name-format.json":       {ReasonInvalidField, "name"},
	"invalid-session-id-format.json": {ReasonInvalidField, "sessionId"},
	"invalid-unknown-reason.json":    {ReasonInvalidField, "reason"},
	"invalid-task-required.json":     {ReasonMissingField, "taskId"},
	"invalid-task-empty.json":        {ReasonMissingField, "taskId"},
	"invalid-requested-at.json":      {ReasonInvalidField, "requestedAt"},
	"invalid-dry-run-type.json":      {ReasonInvalidField, "dryRun"},
}

// TestExamplesAgree runs the shared examples through the JSON Schema and
// through the Go decoder and requires both to give the verdict the file's
// name promises.
func TestExamplesAgree(t *testing.T) {
	t.Parallel()
	eventSchema, cleanupSchema := compileSchemas(t)
	cases := []struct {
		dir    string
		schema *jsonschema.Schema
		decode func([]byte) error
		want   map[string]rejection
		min    int
	}{
		{"testdata/examples", eventSchema, func(b []byte) error { _, err := Decode(b); return err }, exampleRejections, 30},
		{"testdata/examples/cleanup", cleanupSchema, func(b []byte) error { _, err := DecodeCleanup(b); return err }, cleanupExampleRejections, 10},
	}
	for _, tc := range cases {
		t.Run(tc.dir, func(t *testing.T) {
			t.Parallel()
			files, err := filepath.Glob(filepath.Join(tc.dir, "*.json"))
			if err != nil {
				t.Fatal(err)
			}
			if len(files) < tc.min {
				t.Fatalf("%d examples in %s, want at least %d", len(files), tc.dir, tc.min)
			}
			var invalid []string
			for _, path := range files {
				name := filepath.Base(path)
				wantValid := strings.HasPrefix(name, "valid-")
				if !wantValid && !strings.HasPrefix(name, "invalid-") {
					t.Errorf("%s: name must start with valid- or invalid-", name)
					continue
				}
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if ok, why := schemaAccepts(tc.schema, data); ok != wantValid {
					t.Errorf("%s: schema accepts = %v, want %v: %s", name, ok, wantValid, why)
				}
				err = tc.decode(data)
				if wantValid {
					if err != nil {
						t.Errorf("%s: decode: %v", name, err)
					}
					continue
				}
				invalid = append(invalid, name)
				want, listed := tc.want[name]
				if !listed {
					t.Errorf("%s: not listed with its expected rejection", name)
					continue
				}
				if diff := cmp.Diff(&want, rejectionOf(t, err)); diff != "" {
					t.Errorf("%s: decode rejection (-want +got):\n%s\nerror: %v", name, diff, err)
				}
			}
			for name := range tc.want {
				if !slices.Contains(invalid, name) {
					t.Errorf("%s is listed but missing from %s", name, tc.dir)
				}
			}
		})
	}
}

// TestSchemaLooserThanDecode pins down where the schema, which cannot
// express them, accepts what Decode refuses. A producer validating against
// the schema can still send these; the contract's rules are the Go ones.
func TestSchemaLooserThanDecode(t *testing.T) {
	t.Parallel()
	eventSchema, _ := compileSchemas(t)
	cases := []struct {
		name string
		data []byte
		want rejection
	}{
		{"retention over 10 years", with("snapshot.retention", "87601h"), rejection{ReasonInvalidField, "snapshot.retention"}},
		{"retention overflows int64", with("snapshot.retention", "9999999999999h"), rejection{ReasonInvalidField, "snapshot.retention"}},
		{"retention rounds to zero", with("snapshot.retention", "0.1ns"), rejection{ReasonInvalidField, "snapshot.retention"}},
		{"zero time with an offset", with("time", "0001-01-01T01:00:00+01:00"), rejection{ReasonMissingField, "time"}},
		// JSON Schema's "integer" is a value, not a spelling: 12.0 and 1.2e1
		// are the integer 12 to it. Decode wants an id's digits as written.
		{"snapshot.id number with a zero fraction", with("snapshot.id", json.Number("4862391045337619302.0")), rejection{ReasonInvalidField, "snapshot.id"}},
		{"snapshot.id number with an exponent", with("snapshot.id", json.Number("1e3")), rejection{ReasonInvalidField, "snapshot.id"}},
		{"snapshot.id number with a capital exponent and fraction", with("snapshot.id", json.Number("4.862391045337619302E18")), rejection{ReasonInvalidField, "snapshot.id"}},
		// encoding/json and the validator both replace invalid UTF-8.
		{"invalid UTF-8", []byte("{\"id\":\"\xff\",\"type\":\"session.started\",\"time\":\"2024-05-01T12:00:00Z\",\"sessionId\":\"s\"}"), rejection{ReasonBadJSON, ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if ok, why := schemaAccepts(eventSchema, tc.data); !ok {
				t.Errorf("schema refuses it now (%s): add it to the examples as invalid", why)
			}
			_, err := Decode(tc.data)
			if diff := cmp.Diff(&tc.want, rejectionOf(t, err)); diff != "" {
				t.Errorf("Decode rejection (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSchemaPatternsMatchGo keeps the patterns in the schema and the Go
// constants the same text, and the schema's "printable" pattern the same
// set as unicode.IsPrint over every code point.
func TestSchemaPatternsMatchGo(t *testing.T) {
	t.Parallel()
	var doc struct {
		Defs map[string]struct {
			Pattern string `json:"pattern"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(Schema(), &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for name, def := range doc.Defs {
		if def.Pattern != "" {
			got[name] = def.Pattern
		}
	}
	want := map[string]string{
		"sessionId":    sessionIDPattern,
		"snapshotName": snapshotNamePattern,
		"projectId":    projectIDPattern,
		"time":         rfc3339Pattern,
		"printable256": `^[\p{L}\p{M}\p{N}\p{P}\p{S} ]+$`,
		"snapshotId":   snapshotIDPattern,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("schema patterns (-Go +schema):\n%s", diff)
	}

	// The printable class, as the schema's regexp engine parses it; checking
	// every code point against its ranges is quick, unlike running a regexp
	// a million times under the race detector.
	class := strings.TrimSuffix(strings.TrimPrefix(got["printable256"], "^"), "+$")
	re, err := syntax.Parse(class, syntax.Perl)
	if err != nil || re.Op != syntax.OpCharClass {
		t.Fatalf("parse printable class: %v, %v", err, re)
	}
	ranges := re.Rune // sorted lo, hi pairs
	for r := rune(0); r <= unicode.MaxRune; r++ {
		for len(ranges) > 0 && ranges[1] < r {
			ranges = ranges[2:]
		}
		inClass := len(ranges) > 0 && ranges[0] <= r
		if 0xd800 <= r && r <= 0xdfff {
			continue // surrogates cannot appear in UTF-8
		}
		if inClass != unicode.IsPrint(r) {
			t.Errorf("U+%04X: schema pattern says %v, unicode.IsPrint %v", r, !unicode.IsPrint(r), unicode.IsPrint(r))
		}
	}
}

// TestSchemaSnapshotIDBounds checks the schema's snapshot.id against
// ValidSnapshotID and strconv.ParseUint on both sides of every digit of
// the largest id, in both JSON forms: the pattern spells the uint64 range
// out digit by digit, and a slip in one alternative would show only there.
func TestSchemaSnapshotIDBounds(t *testing.T) {
	t.Parallel()
	eventSchema, _ := compileSchemas(t)
	max := strconv.FormatUint(math.MaxUint64, 10)
	ids := []string{"0", "1", "9", "10", "01", "00", strings.Repeat("9", 19), "1" + strings.Repeat("0", 19),
		strings.Repeat("9", 20), "1" + strings.Repeat("0", 20), max, max + "0"}
	for i := range max {
		for d := byte('0'); d <= '9'; d++ {
			ids = append(ids, max[:i]+string(d)+max[i+1:])
		}
	}
	for _, id := range ids {
		n, err := strconv.ParseUint(id, 10, 64)
		want := err == nil && n != 0 && id[0] != '0'
		if got := ValidSnapshotID(id); got != want {
			t.Errorf("ValidSnapshotID(%q) = %v, want %v", id, got, want)
		}
		forms := []any{id}
		if id == "0" || id[0] != '0' { // JSON has no numbers with leading zeros
			forms = append(forms, json.Number(id))
		}
		for _, form := range forms {
			data := with("snapshot.id", form)
			if ok, why := schemaAccepts(eventSchema, data); ok != want {
				t.Errorf("schema on snapshot.id %#v: accepts = %v, want %v: %s", form, ok, want, why)
			}
			_, err := Decode(data)
			if (err == nil) != want {
				t.Errorf("Decode of snapshot.id %#v: %v, want valid = %v", form, err, want)
			}
		}
	}
}

// snapshotIDSpelledAsNonInteger reports whether data's snapshot.id is a
// JSON number with a fraction or an exponent: the schema cannot tell those
// from plain digits (see TestSchemaLooserThanDecode).
func snapshotIDSpelledAsNonInteger(data []byte) bool {
	var doc struct {
		Snapshot struct {
			ID json.RawMessage `json:"id"`
		} `json:"snapshot"`
	}
	if json.Unmarshal(data, &doc) != nil {
		return false
	}
	id := doc.Snapshot.ID
	return len(id) > 0 && id[0] != '"' && bytes.ContainsAny(id, ".eE")
}

// FuzzSchemaAgrees looks for JSON on which the schema and Decode disagree,
// beyond the known cases of TestSchemaLooserThanDecode (the range of
// retention, the zero time written with an offset, invalid UTF-8, a
// snapshot.id number written with a fraction or exponent).
func FuzzSchemaAgrees(f *testing.F) {
	for _, s := range validSeeds() {
		f.Add(s)
	}
	for _, s := range hostileSeeds() {
		f.Add(s)
	}
	eventSchema, _ := compileSchemas(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return
		}
		schemaOK, why := schemaAccepts(eventSchema, data)
		_, err := Decode(data)
		if schemaOK == (err == nil) {
			return
		}
		if re, _ := AsReject(err); schemaOK && re != nil &&
			(re.Field == "snapshot.retention" || re.Field == "time" && re.Reason == ReasonMissingField ||
				re.Field == "snapshot.id" && snapshotIDSpelledAsNonInteger(data)) {
			return
		}
		t.Fatalf("schema accepts = %v (%s), but Decode says %v, for %q", schemaOK, why, err, data)
	})
}
