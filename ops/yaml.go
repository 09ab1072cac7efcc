package ops

import (
	"io"

	"sigs.k8s.io/yaml"
)

// WriteYAML writes v as YAML (-o yaml): the same document as -o json (the
// JSON field names, zero times left out), through sigs.k8s.io/yaml, which
// converts the JSON encoding so the two outputs cannot drift apart. Keys
// come out sorted.
func WriteYAML(w io.Writer, v any) error {
	out, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
