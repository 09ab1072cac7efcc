package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// writeYAMLTo writes v as YAML (-o yaml): the same document as -o json, the
// keys in the same order, in block style.
func writeYAMLTo(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var b strings.Builder
	if err := yamlValue(&b, dec, 0, ""); err != nil {
		return err
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// yamlValue writes the next JSON value of dec. prefix is what precedes it
// on its line ("key:" or "-"); nested blocks are indented by indent.
func yamlValue(b *strings.Builder, dec *json.Decoder, indent int, prefix string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	pad := strings.Repeat("  ", indent)
	sep := func() {
		if prefix != "" {
			b.WriteString(prefix)
			b.WriteString(" ")
		}
	}
	switch t := tok.(type) {
	case json.Delim:
		closing, empty := "}", "{}"
		if t == '[' {
			closing, empty = "]", "[]"
		}
		if !dec.More() {
			_, _ = dec.Token()
			sep()
			b.WriteString(empty + "\n")
			return nil
		}
		if prefix != "" {
			b.WriteString(strings.TrimRight(prefix, " ") + "\n")
		}
		for dec.More() {
			if t == '{' {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				if err := yamlValue(b, dec, indent+1, pad+yamlString(k.(string))+":"); err != nil {
					return err
				}
			} else if err := yamlValue(b, dec, indent+1, pad+"-"); err != nil {
				return err
			}
		}
		if end, err := dec.Token(); err != nil || end != json.Delim(closing[0]) {
			return fmt.Errorf("yaml: unbalanced %v", end)
		}
		return nil
	case string:
		sep()
		b.WriteString(yamlString(t) + "\n")
	case json.Number:
		sep()
		b.WriteString(t.String() + "\n")
	case bool:
		sep()
		b.WriteString(strconv.FormatBool(t) + "\n")
	case nil:
		sep()
		b.WriteString("null\n")
	}
	return nil
}

// yamlString quotes s unless it reads back as the same plain string.
func yamlString(s string) string {
	plain := s != "" && !strings.ContainsAny(s, ":#{}[],&*!|>'\"%@`\n\t\\") &&
		strings.TrimSpace(s) == s && !strings.HasPrefix(s, "-") && !strings.HasPrefix(s, "?")
	if plain {
		switch strings.ToLower(s) {
		case "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n":
			plain = false
		}
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			plain = false
		}
	}
	if plain {
		return s
	}
	q, _ := json.Marshal(s)
	return string(q)
}
