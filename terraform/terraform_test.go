// Package terraform_test checks the snapsweep Terraform module without
// providers (terraform init cannot download them here): it parses every .tf
// file with HCL and checks that references resolve, that variables and
// outputs are documented, that the Firestore indexes and TTL policies match
// what the store runs (store.QueryShapes, store.TTLCollections), that the
// Cloud Run service gets every setting of config.Config, and that the files
// are formatted.
package terraform_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/store"
)

// module is the parsed .tf files of one directory: one Terraform module.
type module struct {
	dir    string
	blocks []*hclsyntax.Block // top-level blocks of every file
}

// parseDir parses the .tf files directly in dir.
func parseDir(dir string) (*module, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, err
	}
	sources := make(map[string]string, len(names))
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		sources[name] = string(b)
	}
	return parseSources(dir, sources)
}

// parseSources parses files given by name and content, as one module.
func parseSources(dir string, sources map[string]string) (*module, error) {
	p := hclparse.NewParser()
	m := &module{dir: dir}
	var diags hcl.Diagnostics
	names := make([]string, 0, len(sources))
	for name := range sources {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f, d := p.ParseHCL([]byte(sources[name]), name)
		diags = append(diags, d...)
		if f == nil {
			continue
		}
		m.blocks = append(m.blocks, f.Body.(*hclsyntax.Body).Blocks...)
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return m, nil
}

// moduleDirs returns every directory under root that holds .tf files.
func moduleDirs(t *testing.T, root string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".terraform" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".tf") {
			if dir := filepath.Dir(path); !slices.Contains(dirs, dir) {
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(dirs, ".") {
		t.Fatalf("no .tf files in %s", root)
	}
	return dirs
}

func parseAll(t *testing.T) map[string]*module {
	t.Helper()
	mods := make(map[string]*module)
	for _, dir := range moduleDirs(t, ".") {
		m, err := parseDir(dir)
		if err != nil {
			t.Fatalf("parse %s: %v", dir, err)
		}
		mods[dir] = m
	}
	return mods
}

// blocksOf returns the top-level blocks of a type, e.g. "variable".
func (m *module) blocksOf(typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// resources returns the resource blocks of one resource type.
func (m *module) resources(typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.blocksOf("resource") {
		if b.Labels[0] == typ {
			out = append(out, b)
		}
	}
	return out
}

// declarations are the names a module's expressions may refer to.
type declarations struct {
	variables map[string]*hclsyntax.Block
	locals    map[string]bool
	resources map[string]bool // "TYPE.NAME"
	data      map[string]bool // "TYPE.NAME"
	modules   map[string]*hclsyntax.Block
	outputs   map[string]bool
}

func (m *module) declarations() declarations {
	d := declarations{
		variables: map[string]*hclsyntax.Block{},
		locals:    map[string]bool{},
		resources: map[string]bool{},
		data:      map[string]bool{},
		modules:   map[string]*hclsyntax.Block{},
		outputs:   map[string]bool{},
	}
	for _, b := range m.blocks {
		switch b.Type {
		case "variable":
			d.variables[b.Labels[0]] = b
		case "locals":
			for name := range b.Body.Attributes {
				d.locals[name] = true
			}
		case "resource":
			d.resources[b.Labels[0]+"."+b.Labels[1]] = true
		case "data":
			d.data[b.Labels[0]+"."+b.Labels[1]] = true
		case "module":
			d.modules[b.Labels[0]] = b
		case "output":
			d.outputs[b.Labels[0]] = true
		}
	}
	return d
}

// scope is what a name may refer to at one place besides declarations.
type scope struct {
	iterators map[string]bool // dynamic block iterators
	each      bool            // inside a block with for_each
	count     bool            // inside a block with count
	self      bool            // inside a provisioner or connection
}

func (s scope) with(iterator string) scope {
	it := map[string]bool{iterator: true}
	for k := range s.iterators {
		it[k] = true
	}
	s.iterators = it
	return s
}

// reference is one traversal found in an expression, and where.
type reference struct {
	traversal hcl.Traversal
	scope     scope
}

func (r reference) String() string {
	var b strings.Builder
	b.WriteString(r.traversal.RootName())
	for _, step := range r.traversal[1:] {
		switch s := step.(type) {
		case hcl.TraverseAttr:
			b.WriteString("." + s.Name)
		case hcl.TraverseIndex:
			b.WriteString("[…]")
		}
	}
	return b.String()
}

func (r reference) pos() string {
	rng := r.traversal.SourceRange()
	return fmt.Sprintf("%s:%d", rng.Filename, rng.Start.Line)
}

// attrName returns the name of step i of t if it is an attribute access.
func attrName(t hcl.Traversal, i int) (string, bool) {
	if i >= len(t) {
		return "", false
	}
	a, ok := t[i].(hcl.TraverseAttr)
	return a.Name, ok
}

// references returns every reference made by the module's expressions,
// with the scope it is made in.
func (m *module) references() []reference {
	var refs []reference
	collect := func(expr hclsyntax.Expression, sc scope) {
		for _, t := range hclsyntax.Variables(expr) {
			refs = append(refs, reference{t, sc})
		}
	}
	// walk collects a block body's references; skip names attributes that
	// hold no expressions (provider names, ignore_changes lists, types).
	var walk func(body *hclsyntax.Body, sc scope, skip ...string)
	walk = func(body *hclsyntax.Body, sc scope, skip ...string) {
		for name, attr := range body.Attributes {
			if !slices.Contains(skip, name) {
				collect(attr.Expr, sc)
			}
		}
		for _, b := range body.Blocks {
			switch b.Type {
			case "lifecycle":
				walk(b.Body, sc, "ignore_changes")
			case "provisioner", "connection":
				inner := sc
				inner.self = true
				walk(b.Body, inner)
			case "dynamic":
				iterator := b.Labels[0]
				if it, ok := b.Body.Attributes["iterator"]; ok {
					iterator = hcl.ExprAsKeyword(it.Expr)
				}
				// The content block sees the iterator; the dynamic block's
				// own for_each does not.
				for name, attr := range b.Body.Attributes {
					if name != "iterator" {
						collect(attr.Expr, sc)
					}
				}
				for _, c := range b.Body.Blocks {
					walk(c.Body, sc.with(iterator))
				}
			default:
				walk(b.Body, sc)
			}
		}
	}
	for _, b := range m.blocks {
		switch b.Type {
		case "terraform":
			// required_providers and backend settings: no references.
		case "variable":
			walk(b.Body, scope{}, "type")
		case "resource", "data", "module":
			sc := scope{}
			_, sc.each = b.Body.Attributes["for_each"]
			_, sc.count = b.Body.Attributes["count"]
			walk(b.Body, sc, "provider", "providers", "source", "version")
		default:
			walk(b.Body, scope{})
		}
	}
	return refs
}

// childModules parses the local modules a module calls (source "./..." or
// "../..."), by call name.
func childModules(m *module) (map[string]*module, []string) {
	children := map[string]*module{}
	var problems []string
	for _, call := range m.blocksOf("module") {
		src, ok := literalString(call.Body, "source")
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: module %q: source must be a literal string", pos(call), call.Labels[0]))
			continue
		}
		if !strings.HasPrefix(src, "./") && !strings.HasPrefix(src, "../") {
			continue // registry or remote module: not checked here
		}
		child, err := parseDir(filepath.Join(m.dir, src))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: module %q: %v", pos(call), call.Labels[0], err))
			continue
		}
		children[call.Labels[0]] = child
	}
	return children, problems
}

// checkReferences reports every reference that does not resolve to a
// declaration of the module: var.X, local.X, module.X (and module.X.OUTPUT
// for local modules), data.T.N, T.N for resources, each/count outside
// for_each/count.
func checkReferences(m *module) []string {
	d := m.declarations()
	children, problems := childModules(m)
	bad := func(r reference, why string) {
		problems = append(problems, fmt.Sprintf("%s: %s: %s", r.pos(), r, why))
	}
	for _, r := range m.references() {
		root := r.traversal.RootName()
		first, hasFirst := attrName(r.traversal, 1)
		switch {
		case r.scope.iterators[root]:
		case root == "var":
			if _, ok := d.variables[first]; !ok {
				bad(r, "no such variable")
			}
		case root == "local":
			if !d.locals[first] {
				bad(r, "no such local value")
			}
		case root == "module":
			if _, ok := d.modules[first]; !ok {
				bad(r, "no such module call")
				continue
			}
			if child, ok := children[first]; ok {
				if out, ok := attrName(r.traversal, 2); ok && !child.declarations().outputs[out] {
					bad(r, fmt.Sprintf("module %q has no output %q", first, out))
				}
			}
		case root == "data":
			name, _ := attrName(r.traversal, 2)
			if !d.data[first+"."+name] {
				bad(r, "no such data source")
			}
		case root == "each":
			if !r.scope.each {
				bad(r, "each used outside a block with for_each")
			}
		case root == "count":
			if !r.scope.count {
				bad(r, "count used outside a block with count")
			}
		case root == "self":
			if !r.scope.self {
				bad(r, "self used outside a provisioner or connection")
			}
		case root == "path" || root == "terraform":
		default:
			if !hasFirst || !d.resources[root+"."+first] {
				bad(r, "no such resource")
			}
		}
	}
	return problems
}

// checkModuleCalls reports arguments of local module calls that the child
// does not declare, and the child's required variables a call leaves out.
func checkModuleCalls(m *module) []string {
	children, problems := childModules(m)
	meta := []string{"source", "version", "providers", "count", "for_each", "depends_on"}
	for _, call := range m.blocksOf("module") {
		child, ok := children[call.Labels[0]]
		if !ok {
			continue
		}
		vars := child.declarations().variables
		for name := range call.Body.Attributes {
			if _, ok := vars[name]; !ok && !slices.Contains(meta, name) {
				problems = append(problems, fmt.Sprintf("%s: module %q: the module has no variable %q", pos(call), call.Labels[0], name))
			}
		}
		for name, v := range vars {
			if _, hasDefault := v.Body.Attributes["default"]; hasDefault {
				continue
			}
			if _, given := call.Body.Attributes[name]; !given {
				problems = append(problems, fmt.Sprintf("%s: module %q: required variable %q is not set", pos(call), call.Labels[0], name))
			}
		}
	}
	return problems
}

// checkDocumented reports variables without type or description and
// outputs without description.
func checkDocumented(m *module) []string {
	var problems []string
	for _, v := range m.blocksOf("variable") {
		for _, attr := range []string{"type", "description"} {
			if _, ok := v.Body.Attributes[attr]; !ok {
				problems = append(problems, fmt.Sprintf("%s: variable %q has no %s", pos(v), v.Labels[0], attr))
			}
		}
		if desc, ok := literalString(v.Body, "description"); ok && strings.TrimSpace(desc) == "" {
			problems = append(problems, fmt.Sprintf("%s: variable %q has an empty description", pos(v), v.Labels[0]))
		}
	}
	for _, o := range m.blocksOf("output") {
		if _, ok := o.Body.Attributes["description"]; !ok {
			problems = append(problems, fmt.Sprintf("%s: output %q has no description", pos(o), o.Labels[0]))
		}
	}
	return problems
}

// checkVariablesUsed reports variables nothing refers to.
func checkVariablesUsed(m *module) []string {
	used := map[string]bool{}
	for _, r := range m.references() {
		if r.traversal.RootName() == "var" {
			name, _ := attrName(r.traversal, 1)
			used[name] = true
		}
	}
	var problems []string
	for _, v := range m.blocksOf("variable") {
		if !used[v.Labels[0]] {
			problems = append(problems, fmt.Sprintf("%s: variable %q is never used", pos(v), v.Labels[0]))
		}
	}
	return problems
}

// index is one google_firestore_index resource.
type index struct {
	name       string // resource name, with position
	collection string
	fields     []store.IndexField
}

// firestoreIndexes reads the google_firestore_index resources. Their
// collection and fields must be literals, so that this test can read them.
func firestoreIndexes(m *module) ([]index, []string) {
	var out []index
	var problems []string
	for _, r := range m.resources("google_firestore_index") {
		ix := index{name: fmt.Sprintf("google_firestore_index.%s (%s)", r.Labels[1], pos(r))}
		var ok bool
		if ix.collection, ok = literalString(r.Body, "collection"); !ok {
			problems = append(problems, ix.name+": collection must be a literal string")
			continue
		}
		for _, f := range r.Body.Blocks {
			if f.Type == "dynamic" {
				problems = append(problems, ix.name+": fields must be literal blocks, not dynamic")
				continue
			}
			if f.Type != "fields" {
				continue
			}
			path, ok1 := literalString(f.Body, "field_path")
			order, ok2 := literalString(f.Body, "order")
			if !ok1 || !ok2 {
				problems = append(problems, ix.name+": every fields block needs literal field_path and order")
				continue
			}
			if path == "__name__" {
				continue // Firestore appends it anyway
			}
			ix.fields = append(ix.fields, store.IndexField{Path: path, Order: order})
		}
		out = append(out, ix)
	}
	return out, problems
}

// covers reports whether index ix serves query shape s: same collection and
// fields with the same directions, the equality fields (all but the last)
// in any order, the last field last.
func covers(ix index, s store.QueryShape) bool {
	if ix.collection != s.Collection || len(ix.fields) != len(s.Fields) || len(s.Fields) == 0 {
		return false
	}
	last := len(s.Fields) - 1
	if ix.fields[last] != s.Fields[last] {
		return false
	}
	key := func(f store.IndexField) string { return f.Path + " " + f.Order }
	want := make([]string, 0, last)
	got := make([]string, 0, last)
	for i := range last {
		want = append(want, key(s.Fields[i]))
		got = append(got, key(ix.fields[i]))
	}
	sort.Strings(want)
	sort.Strings(got)
	return slices.Equal(want, got)
}

// checkIndexes reports every query shape of more than one field that no
// index covers, and every index that covers no shape (stale).
func checkIndexes(m *module, shapes []store.QueryShape) []string {
	indexes, problems := firestoreIndexes(m)
	used := make([]bool, len(indexes))
	for _, s := range shapes {
		if len(s.Fields) < 2 {
			continue // Firestore indexes single fields itself
		}
		found := false
		for i, ix := range indexes {
			if covers(ix, s) {
				found, used[i] = true, true
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("query shape %q (collection %s, fields %s) has no google_firestore_index", s.Name, s.Collection, fieldList(s.Fields)))
		}
	}
	for i, ix := range indexes {
		if !used[i] {
			problems = append(problems, fmt.Sprintf("%s on %s %s serves no query shape in store.QueryShapes", ix.name, ix.collection, fieldList(ix.fields)))
		}
	}
	return problems
}

func fieldList(fields []store.IndexField) string {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = f.Path + " " + f.Order
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// checkTTL reports TTL collections without a google_firestore_field TTL
// policy on the TTL field, with that field's indexing turned off.
func checkTTL(m *module, collections []string, field string) []string {
	var problems []string
	for _, c := range collections {
		found := false
		for _, r := range m.resources("google_firestore_field") {
			coll, _ := literalString(r.Body, "collection")
			f, _ := literalString(r.Body, "field")
			if coll != c || f != field {
				continue
			}
			found = true
			ttl, idx := blockOf(r.Body, "ttl_config"), blockOf(r.Body, "index_config")
			switch {
			case ttl == nil:
				problems = append(problems, fmt.Sprintf("%s: google_firestore_field.%s has no ttl_config", pos(r), r.Labels[1]))
			case idx == nil || len(idx.Body.Attributes) > 0 || len(idx.Body.Blocks) > 0:
				problems = append(problems, fmt.Sprintf("%s: google_firestore_field.%s must turn indexing of %s off with an empty index_config {}", pos(r), r.Labels[1], field))
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("TTL collection %q has no google_firestore_field TTL policy on %q", c, field))
		}
	}
	return problems
}

// serviceEnv returns the keys of local.service_env, the environment of the
// Cloud Run container.
func serviceEnv(m *module) ([]string, error) {
	for _, b := range m.blocksOf("locals") {
		attr, ok := b.Body.Attributes["service_env"]
		if !ok {
			continue
		}
		obj, ok := attr.Expr.(*hclsyntax.ObjectConsExpr)
		if !ok {
			return nil, errors.New("local.service_env must be an object literal")
		}
		var keys []string
		for _, item := range obj.Items {
			v, diags := item.KeyExpr.Value(nil)
			if diags.HasErrors() || v.Type() != cty.String {
				return nil, fmt.Errorf("local.service_env: key at %s is not a literal", item.KeyExpr.Range())
			}
			keys = append(keys, v.AsString())
		}
		return keys, nil
	}
	return nil, errors.New("no local.service_env")
}

// configEnv returns the environment variables config.Config reads.
func configEnv() []string {
	var names []string
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		tag := typ.Field(i).Tag.Get("env")
		if name, _, _ := strings.Cut(tag, ","); strings.TrimSpace(name) != "" {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return names
}

// literalString returns a body's attribute as a string if it is a literal.
func literalString(body *hclsyntax.Body, name string) (string, bool) {
	attr, ok := body.Attributes[name]
	if !ok {
		return "", false
	}
	v, diags := attr.Expr.Value(nil)
	if diags.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return "", false
	}
	return v.AsString(), true
}

func blockOf(body *hclsyntax.Body, typ string) *hclsyntax.Block {
	for _, b := range body.Blocks {
		if b.Type == typ {
			return b
		}
	}
	return nil
}

func pos(b *hclsyntax.Block) string {
	return fmt.Sprintf("%s:%d", b.TypeRange.Filename, b.TypeRange.Start.Line)
}

func report(t *testing.T, what string, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Errorf("%s: %s", what, p)
	}
}

func TestReferencesResolve(t *testing.T) {
	t.Parallel()
	for dir, m := range parseAll(t) {
		report(t, dir, checkReferences(m))
		report(t, dir, checkModuleCalls(m))
	}
}

func TestVariablesAndOutputsDocumented(t *testing.T) {
	t.Parallel()
	for dir, m := range parseAll(t) {
		report(t, dir, checkDocumented(m))
		report(t, dir, checkVariablesUsed(m))
	}
}

func TestFirestoreIndexesCoverQueryShapes(t *testing.T) {
	t.Parallel()
	m, err := parseDir(".")
	if err != nil {
		t.Fatal(err)
	}
	report(t, "firestore indexes", checkIndexes(m, store.QueryShapes()))
}

func TestFirestoreTTLPolicies(t *testing.T) {
	t.Parallel()
	m, err := parseDir(".")
	if err != nil {
		t.Fatal(err)
	}
	report(t, "firestore TTL", checkTTL(m, store.TTLCollections, store.TTLField))
}

// TestServiceGetsEverySetting checks that the Cloud Run service is given
// every setting config.Config reads, and nothing it does not read, except
// what Cloud Run sets itself (PORT) and what only tests and local runs use.
func TestServiceGetsEverySetting(t *testing.T) {
	t.Parallel()
	m, err := parseDir(".")
	if err != nil {
		t.Fatal(err)
	}
	got, err := serviceEnv(m)
	if err != nil {
		t.Fatal(err)
	}
	notInProduction := []string{"PORT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "SNAPSWEEP_COMPUTE_ENDPOINT"}
	var want []string
	for _, name := range configEnv() {
		if !slices.Contains(notInProduction, name) {
			want = append(want, name)
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("local.service_env keys differ from config.Config's settings (-want +got):\n%s", diff)
	}

	// And the container really gets local.service_env.
	var found bool
	for _, svc := range m.resources("google_cloud_run_v2_service") {
		for _, tpl := range svc.Body.Blocks {
			for _, c := range tpl.Body.Blocks {
				for _, d := range c.Body.Blocks {
					if d.Type != "dynamic" || d.Labels[0] != "env" {
						continue
					}
					if fe, ok := d.Body.Attributes["for_each"]; ok {
						for _, tr := range hclsyntax.Variables(fe.Expr) {
							if name, _ := attrName(tr, 1); tr.RootName() == "local" && name == "service_env" {
								found = true
							}
						}
					}
				}
			}
		}
	}
	if !found {
		t.Error(`no google_cloud_run_v2_service container has dynamic "env" { for_each = local.service_env }`)
	}
}

// TestLeastPrivilege guards the two promises of the module's IAM: nobody
// outside the granted accounts may invoke anything, and the service may do
// nothing to snapshots but read, list and delete them.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	m, err := parseDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.blocksOf("resource") {
		for _, name := range []string{"member", "members"} {
			attr, ok := r.Body.Attributes[name]
			if !ok {
				continue
			}
			rng := attr.Expr.Range()
			src, err := os.ReadFile(rng.Filename)
			if err != nil {
				t.Fatal(err)
			}
			text := string(rng.SliceBytes(src))
			for _, public := range []string{"allUsers", "allAuthenticatedUsers"} {
				if strings.Contains(text, public) {
					t.Errorf("%s: %s.%s grants something to %s", pos(r), r.Labels[0], r.Labels[1], public)
				}
			}
		}
	}

	var got []string
	for _, b := range m.blocksOf("locals") {
		if attr, ok := b.Body.Attributes["cleaner_permissions"]; ok {
			v, diags := attr.Expr.Value(nil)
			if diags.HasErrors() || !v.CanIterateElements() {
				t.Fatalf("local.cleaner_permissions must be a literal list: %v", diags)
			}
			for it := v.ElementIterator(); it.Next(); {
				_, p := it.Element()
				got = append(got, p.AsString())
			}
		}
	}
	want := []string{"compute.globalOperations.get", "compute.snapshots.delete", "compute.snapshots.get", "compute.snapshots.list"}
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("permissions of the snapsweepSnapshotCleaner role (-want +got):\n%s", diff)
	}
	for _, r := range m.resources("google_project_iam_custom_role") {
		perms, ok := r.Body.Attributes["permissions"]
		if !ok {
			t.Errorf("%s: custom role without permissions", pos(r))
			continue
		}
		refs := hclsyntax.Variables(perms.Expr)
		if len(refs) != 1 || refs[0].RootName() != "local" {
			t.Errorf("%s: custom role permissions must be local.cleaner_permissions", pos(r))
		} else if name, _ := attrName(refs[0], 1); name != "cleaner_permissions" {
			t.Errorf("%s: custom role permissions must be local.cleaner_permissions, not local.%s", pos(r), name)
		}
	}
}

func TestTerraformFmt(t *testing.T) {
	t.Parallel()
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Skip("terraform is not on PATH: formatting not checked")
	}
	cmd := exec.Command(tf, "fmt", "-check", "-recursive", "-diff", ".")
	// fmt reads no CLI configuration; spare the warning about a missing one.
	if f := os.Getenv("TF_CLI_CONFIG_FILE"); f != "" {
		if _, err := os.Stat(f); err != nil {
			cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "TF_CLI_CONFIG_FILE=") })
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("terraform fmt -check -recursive: %v (run `terraform fmt -recursive terraform`)\n%s", err, out)
	}
}

// TestChecksCatchMistakes feeds each check a small module with one mistake
// and expects it to be reported: a check that cannot fail proves nothing.
func TestChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	shapes := []store.QueryShape{
		{Name: "by-session-state", Collection: "snapshots", Fields: []store.IndexField{
			{Path: "sessionId", Order: "ASCENDING"}, {Path: "taskId", Order: "ASCENDING"}, {Path: "state", Order: "ASCENDING"},
		}},
		{Name: "single", Collection: "snapshots", Fields: []store.IndexField{{Path: "at", Order: "DESCENDING"}}},
	}
	index := func(fields ...string) string {
		var b strings.Builder
		b.WriteString("resource \"google_firestore_index\" \"i\" {\n  collection = \"snapshots\"\n")
		for i := 0; i < len(fields); i += 2 {
			fmt.Fprintf(&b, "  fields {\n    field_path = %q\n    order = %q\n  }\n", fields[i], fields[i+1])
		}
		b.WriteString("}\n")
		return b.String()
	}
	good := `
variable "name" {
  type        = string
  description = "A name."
}
locals {
  names = { a = var.name }
}
resource "google_pubsub_topic" "t" {
  for_each = local.names
  name     = each.value
}
resource "google_thing" "x" {
  dynamic "env" {
    for_each = local.names
    content {
      name = env.key
    }
  }
  lifecycle {
    ignore_changes = [template[0].image]
  }
}
output "topics" {
  description = "Topics."
  value       = [for k, t in google_pubsub_topic.t : t.name]
}
`
	tests := []struct {
		name  string
		src   string
		check func(*module) []string
		want  string // a problem containing this; "" for none
	}{
		{"clean module", good, checkReferences, ""},
		{"dangling variable", good + `output "o" {
  description = "x"
  value       = var.nmae
}`, checkReferences, "var.nmae: no such variable"},
		{"dangling local", good + `output "o" {
  description = "x"
  value       = local.missing
}`, checkReferences, "local.missing: no such local value"},
		{"dangling resource", good + `output "o" {
  description = "x"
  value       = google_pubsub_topic.gone.id
}`, checkReferences, "google_pubsub_topic.gone.id: no such resource"},
		{"dangling data source", good + `output "o" {
  description = "x"
  value       = data.google_project.host.number
}`, checkReferences, "no such data source"},
		{"dangling module", good + `output "o" {
  description = "x"
  value       = module.nope.url
}`, checkReferences, "no such module call"},
		{"dangling reference in nested block", good + `resource "google_thing" "y" {
  template {
    containers {
      image = var.image
    }
  }
}`, checkReferences, "var.image: no such variable"},
		{"iterator outside its dynamic block", good + `resource "google_thing" "z" {
  name = env.key
}`, checkReferences, "env.key: no such resource"},
		{"each without for_each", good + `resource "google_thing" "w" {
  name = each.key
}`, checkReferences, "each used outside"},
		{"variable without type", `variable "v" {
  description = "x"
}`, checkDocumented, `variable "v" has no type`},
		{"variable without description", `variable "v" {
  type = string
}`, checkDocumented, `variable "v" has no description`},
		{"output without description", `output "o" {
  value = 1
}`, checkDocumented, `output "o" has no description`},
		{"unused variable", `variable "v" {
  type        = string
  description = "x"
}`, checkVariablesUsed, `variable "v" is never used`},
		{"index covers shape", index("sessionId", "ASCENDING", "taskId", "ASCENDING", "state", "ASCENDING"),
			func(m *module) []string { return checkIndexes(m, shapes) }, ""},
		{"equality fields in another order", index("taskId", "ASCENDING", "sessionId", "ASCENDING", "state", "ASCENDING"),
			func(m *module) []string { return checkIndexes(m, shapes) }, ""},
		{"missing index", "", func(m *module) []string { return checkIndexes(m, shapes) }, `query shape "by-session-state"`},
		{"last field differs", index("sessionId", "ASCENDING", "state", "ASCENDING", "taskId", "ASCENDING"),
			func(m *module) []string { return checkIndexes(m, shapes) }, `query shape "by-session-state"`},
		{"direction differs", index("sessionId", "ASCENDING", "taskId", "ASCENDING", "state", "DESCENDING"),
			func(m *module) []string { return checkIndexes(m, shapes) }, `query shape "by-session-state"`},
		{"stale index", index("sessionId", "ASCENDING", "taskId", "ASCENDING", "state", "ASCENDING") +
			strings.Replace(index("state", "ASCENDING", "x", "ASCENDING"), `"i"`, `"old"`, 1),
			func(m *module) []string { return checkIndexes(m, shapes) }, "google_firestore_index.old"},
		{"missing TTL policy", "", func(m *module) []string { return checkTTL(m, []string{"rejected"}, "expireAt") }, `TTL collection "rejected"`},
		{"TTL field still indexed", `resource "google_firestore_field" "f" {
  collection = "rejected"
  field      = "expireAt"
  ttl_config {}
}`, func(m *module) []string { return checkTTL(m, []string{"rejected"}, "expireAt") }, "empty index_config"},
		{"TTL policy present", `resource "google_firestore_field" "f" {
  collection = "rejected"
  field      = "expireAt"
  ttl_config {}
  index_config {}
}`, func(m *module) []string { return checkTTL(m, []string{"rejected"}, "expireAt") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := parseSources("inline", map[string]string{"inline.tf": tt.src})
			if err != nil {
				t.Fatal(err)
			}
			problems := tt.check(m)
			if tt.want == "" {
				if len(problems) > 0 {
					t.Errorf("want no problems, got:\n%s", strings.Join(problems, "\n"))
				}
				return
			}
			for _, p := range problems {
				if strings.Contains(p, tt.want) {
					return
				}
			}
			t.Errorf("want a problem containing %q, got:\n%s", tt.want, strings.Join(problems, "\n"))
		})
	}
}

// TestModuleCallChecks covers the checks of a root module that calls a local
// module: outputs it reads, arguments it passes, required ones it omits.
func TestModuleCallChecks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	child := filepath.Join(dir, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	childSrc := `
variable "required" {
  type        = string
  description = "x"
}
variable "optional" {
  type        = string
  description = "x"
  default     = "y"
}
output "url" {
  description = "x"
  value       = "${var.required}${var.optional}"
}
`
	if err := os.WriteFile(filepath.Join(child, "main.tf"), []byte(childSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	root := `
module "c" {
  source  = "./child"
  unknown = 1
}
output "u" {
  description = "x"
  value       = module.c.nope
}
`
	m, err := parseSources(dir, map[string]string{filepath.Join(dir, "main.tf"): root})
	if err != nil {
		t.Fatal(err)
	}
	got := append(checkReferences(m), checkModuleCalls(m)...)
	for _, want := range []string{`module "c" has no output "nope"`, `the module has no variable "unknown"`, `required variable "required" is not set`} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("want a problem containing %q, got:\n%s", want, strings.Join(got, "\n"))
		}
	}
}
