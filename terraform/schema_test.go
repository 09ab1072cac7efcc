package terraform_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// providerSchema is testdata/google-6.50.0-schema.json: by provider
// ("google", "google-beta"), the blocks of its resources and data sources.
type providerSchema map[string]struct {
	Resources map[string]struct {
		Block schemaBlock `json:"block"`
	} `json:"resource_schemas"`
	Data map[string]struct {
		Block schemaBlock `json:"block"`
	} `json:"data_source_schemas"`
}

type schemaBlock struct {
	Attributes map[string]schemaAttribute `json:"attributes"`
	BlockTypes map[string]schemaNested    `json:"block_types"`
}

type schemaAttribute struct {
	Required, Optional, Computed, Deprecated bool
}

type schemaNested struct {
	NestingMode string      `json:"nesting_mode"`
	Block       schemaBlock `json:"block"`
}

func loadSchema(t *testing.T) providerSchema {
	t.Helper()
	b, err := os.ReadFile("testdata/google-6.50.0-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s providerSchema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("testdata/google-6.50.0-schema.json: %v", err)
	}
	return s
}

// checkSchema reports what `terraform validate` would reject in the
// module's resources and data sources: a type the provider does not have,
// an argument or nested block its schema does not have, an argument that is
// computed only or deprecated, a required argument left out. It cannot check
// values (lengths, enums, filter syntax); only a plan with the provider does.
func checkSchema(m *module, schema providerSchema) []string {
	var problems []string
	for _, b := range m.blocks {
		if b.Type != "resource" && b.Type != "data" {
			continue
		}
		provider := "google"
		if attr, ok := b.Body.Attributes["provider"]; ok {
			if name, ok := providerRef(attr.Expr); ok {
				provider = name
			}
		}
		p, ok := schema[provider]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: no schema of provider %q", pos(b), provider))
			continue
		}
		typ := b.Labels[0]
		var block schemaBlock
		if b.Type == "resource" {
			r, ok := p.Resources[typ]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: resource type %s is not in the provider schema (%s)", pos(b), typ, provider))
				continue
			}
			block = r.Block
		} else {
			d, ok := p.Data[typ]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: data source %s is not in the provider schema (%s)", pos(b), typ, provider))
				continue
			}
			block = d.Block
		}
		problems = append(problems, checkBody(b.Type+" "+typ+"."+b.Labels[1], b.Body, block, true)...)
	}
	return problems
}

// providerRef returns the provider a `provider = google-beta` argument names.
func providerRef(e hclsyntax.Expression) (string, bool) {
	st, ok := e.(*hclsyntax.ScopeTraversalExpr)
	if !ok {
		return "", false
	}
	return st.Traversal.RootName(), true
}

func checkBody(where string, body *hclsyntax.Body, sb schemaBlock, top bool) []string {
	var problems []string
	meta := []string{"for_each", "count", "depends_on", "provider"}
	for name, attr := range body.Attributes {
		if top && slices.Contains(meta, name) {
			continue
		}
		a, ok := sb.Attributes[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s:%d: %s: no argument %q in the provider schema", attr.SrcRange.Filename, attr.SrcRange.Start.Line, where, name))
		case a.Computed && !a.Optional && !a.Required:
			problems = append(problems, fmt.Sprintf("%s:%d: %s: %q is computed only", attr.SrcRange.Filename, attr.SrcRange.Start.Line, where, name))
		case a.Deprecated:
			problems = append(problems, fmt.Sprintf("%s:%d: %s: %q is deprecated", attr.SrcRange.Filename, attr.SrcRange.Start.Line, where, name))
		}
	}
	for name, a := range sb.Attributes {
		if _, set := body.Attributes[name]; a.Required && !set {
			problems = append(problems, fmt.Sprintf("%s: required argument %q is not set", where, name))
		}
	}
	for _, b := range body.Blocks {
		if top && slices.Contains([]string{"lifecycle", "provisioner", "connection"}, b.Type) {
			continue
		}
		name, inner := b.Type, b.Body
		if b.Type == "dynamic" {
			name, inner = b.Labels[0], nil
			if c := blockOf(b.Body, "content"); c != nil {
				inner = c.Body
			}
		}
		nb, ok := sb.BlockTypes[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %s: no block %q in the provider schema", pos(b), where, name))
			continue
		}
		if inner != nil {
			problems = append(problems, checkBody(where+"."+name, inner, nb.Block, false)...)
		}
	}
	return problems
}

// TestArgumentsInProviderSchema checks every resource and data source of
// every module directory against the provider schema.
func TestArgumentsInProviderSchema(t *testing.T) {
	t.Parallel()
	schema := loadSchema(t)
	for dir, m := range parseAll(t) {
		report(t, dir, checkSchema(m, schema))
	}
}

// TestSchemaCheckCatchesMistakes: the schema check fails on each kind of
// mistake it is there for.
func TestSchemaCheckCatchesMistakes(t *testing.T) {
	t.Parallel()
	schema := loadSchema(t)
	sub := func(body string) string {
		return "resource \"google_pubsub_subscription\" \"s\" {\n  name  = \"s\"\n  topic = \"t\"\n" + body + "}\n"
	}
	tests := []struct {
		name, src, want string // want "" for no problem
	}{
		{"valid", sub("  filter = \"attributes.project = \\\"p\\\"\"\n  push_config {\n    push_endpoint = \"https://x\"\n  }\n"), ""},
		{"dynamic block", sub("  dynamic \"push_config\" {\n    for_each = {}\n    content {\n      push_endpoint = \"https://x\"\n    }\n  }\n"), ""},
		{"misspelt argument", sub("  filtre = \"x\"\n"), `no argument "filtre"`},
		{"computed only", sub("  effective_labels = {}\n"), `"effective_labels" is computed only`},
		{"missing required", "resource \"google_pubsub_subscription\" \"s\" {\n  name = \"s\"\n}\n", `required argument "topic" is not set`},
		{"unknown nested block", sub("  push_settings {\n  }\n"), `no block "push_settings"`},
		{"unknown argument in nested block", sub("  push_config {\n    push_endpoint = \"https://x\"\n    audience = \"a\"\n  }\n"), `no argument "audience"`},
		{"unknown type", "resource \"google_pubsub_subscriptions\" \"s\" {\n}\n", "not in the provider schema"},
		{"beta provider", "resource \"google_project_service_identity\" \"p\" {\n  provider = google-beta\n  service = \"pubsub.googleapis.com\"\n}\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := parseSources("inline", map[string]string{"inline.tf": tt.src})
			if err != nil {
				t.Fatal(err)
			}
			problems := checkSchema(m, schema)
			if tt.want == "" {
				if len(problems) > 0 {
					t.Errorf("want no problems, got:\n%s", strings.Join(problems, "\n"))
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("want a problem containing %q, got:\n%s", tt.want, strings.Join(problems, "\n"))
			}
		})
	}
}
