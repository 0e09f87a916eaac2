package devstack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// resourceKinds are the kinds daprd loads from a resources path. Anything else found there
// (the run file, the Configuration, JSON secrets) is left out of the effective resources dir:
// daprd would only warn about it.
var resourceKinds = []string{"Component", "Resiliency", "Subscription", "HTTPEndpoint"}

// Resource is one Dapr resource document found in a resources path.
type Resource struct {
	Kind   string
	Name   string
	Type   string   // spec.type; components only
	Scopes []string // app ids allowed to load it; empty means all
	Source string   // file it was read from

	doc *yaml.Node // the document node, edited in place by overrides
}

// Metadata returns the component's spec.metadata entries that have a plain value.
func (r Resource) Metadata() map[string]string {
	out := map[string]string{}
	items := mappingValue(mappingValue(r.doc, "spec"), "metadata")
	if items == nil || items.Kind != yaml.SequenceNode {
		return out
	}
	for _, item := range items.Content {
		name := mappingValue(item, "name")
		value := mappingValue(item, "value")
		if name != nil && value != nil && value.Kind == yaml.ScalarNode {
			out[name.Value] = value.Value
		}
	}
	return out
}

// InScope reports whether any of appIDs may load the resource.
func (r Resource) InScope(appIDs ...string) bool {
	if len(r.Scopes) == 0 {
		return true
	}
	for _, id := range appIDs {
		if slices.Contains(r.Scopes, id) {
			return true
		}
	}
	return false
}

// LoadResources reads every *.yaml and *.yml file directly in each dir (daprd does not recurse)
// and returns the documents of kind Component, Resiliency, Subscription and HTTPEndpoint.
// Other documents and files are skipped. Two resources of the same kind and name are an error.
func LoadResources(dirs ...string) ([]Resource, error) {
	var out []Resource
	seen := map[string]string{}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("read resources path: %w", err)
		}
		for _, e := range entries {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			path := filepath.Join(dir, e.Name())
			docs, err := readResourceFile(path)
			if err != nil {
				return nil, err
			}
			for _, r := range docs {
				key := r.Kind + "/" + r.Name
				if prev, ok := seen[key]; ok {
					return nil, fmt.Errorf("%s %q is defined in both %s and %s", r.Kind, r.Name, prev, r.Source)
				}
				seen[key] = r.Source
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// overlayResources replaces base resources by the overlay directory's resources of the same
// kind and name, and adds the overlay's others.
func overlayResources(base []Resource, dir string) ([]Resource, error) {
	over, err := LoadResources(dir)
	if err != nil {
		return nil, fmt.Errorf("overlay %s: %w", dir, err)
	}
	out := slices.Clone(base)
	for _, r := range over {
		i := slices.IndexFunc(out, func(b Resource) bool { return b.Kind == r.Kind && b.Name == r.Name })
		if i >= 0 {
			out[i] = r
		} else {
			out = append(out, r)
		}
	}
	return out, nil
}

func readResourceFile(path string) ([]Resource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read resource file: %w", err)
	}
	var out []Resource
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		root := documentRoot(&doc)
		if root == nil || root.Kind != yaml.MappingNode {
			continue
		}
		kind := scalar(mappingValue(root, "kind"))
		if !slices.Contains(resourceKinds, kind) {
			continue
		}
		name := scalar(mappingValue(mappingValue(root, "metadata"), "name"))
		if name == "" {
			return nil, fmt.Errorf("%s: %s without metadata.name", path, kind)
		}
		r := Resource{
			Kind:   kind,
			Name:   name,
			Type:   scalar(mappingValue(mappingValue(root, "spec"), "type")),
			Source: path,
			doc:    root,
		}
		if scopes := mappingValue(root, "scopes"); scopes != nil && scopes.Kind == yaml.SequenceNode {
			for _, s := range scopes.Content {
				r.Scopes = append(r.Scopes, s.Value)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// applyMetadataOverrides replaces (or adds) spec.metadata values of the named components and
// returns the names it found.
func applyMetadataOverrides(resources []Resource, overrides map[string]map[string]string) map[string]bool {
	found := map[string]bool{}
	for comp, values := range overrides {
		i := slices.IndexFunc(resources, func(r Resource) bool { return r.Kind == "Component" && r.Name == comp })
		if i < 0 {
			continue
		}
		found[comp] = true
		for _, name := range sortedKeys(values) {
			setMetadata(resources[i].doc, name, values[name])
		}
	}
	return found
}

// absSecretsFiles makes the relative secretsFile of every secretstores.local.file component
// absolute against baseDir. daprd resolves it against its working directory, which the Dapr
// CLI sets to each app's appDirPath; the repository's components write it relative to the
// repository root instead, so the effective copy carries the absolute path and works from any
// working directory.
func absSecretsFiles(resources []Resource, baseDir string) {
	for _, r := range resources {
		if r.Kind != "Component" || r.Type != "secretstores.local.file" {
			continue
		}
		if p, ok := r.Metadata()["secretsFile"]; ok && p != "" && !filepath.IsAbs(p) {
			setMetadata(r.doc, "secretsFile", filepath.Join(baseDir, p))
		}
	}
}

// setMetadata sets spec.metadata[name].value, replacing a secretKeyRef if there is one.
func setMetadata(root *yaml.Node, name, value string) {
	spec := ensureMapping(root, "spec")
	items := mappingValue(spec, "metadata")
	if items == nil || items.Kind != yaml.SequenceNode {
		items = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		setMappingValue(spec, "metadata", items)
	}
	for _, item := range items.Content {
		if scalar(mappingValue(item, "name")) != name {
			continue
		}
		deleteMappingKey(item, "secretKeyRef")
		setMappingValue(item, "value", stringNode(value))
		return
	}
	items.Content = append(items.Content, &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
		stringNode("name"), stringNode(name),
		stringNode("value"), stringNode(value),
	}})
}

// writeResources writes each resource to dir as <kind>-<name>.yaml, replacing what was there.
func writeResources(dir string, resources []Resource, header string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear resources dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create resources dir: %w", err)
	}
	for _, r := range resources {
		data, err := encodeYAML(r.doc)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", r.Kind, r.Name, err)
		}
		name := strings.ToLower(r.Kind) + "-" + r.Name + ".yaml"
		content := fmt.Sprintf("# %s\n# Source: %s\n%s", header, r.Source, data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write resource: %w", err)
		}
	}
	return nil
}

// --- yaml.Node helpers ---

func documentRoot(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return n.Content[0]
	}
	return n
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func setMappingValue(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, stringNode(key), v)
}

func deleteMappingKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// ensureMapping returns m[key], creating an empty mapping there if it is missing or not a mapping.
func ensureMapping(m *yaml.Node, key string) *yaml.Node {
	if v := mappingValue(m, key); v != nil && v.Kind == yaml.MappingNode {
		return v
	}
	v := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	setMappingValue(m, key, v)
	return v
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// stringNode is a scalar the encoder quotes when needed ("true", "0", ...), so values stay strings.
func stringNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func encodeYAML(n *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
