// Package jsonobj edits the top level of a JSON object file without
// touching anything else. daemon.json and the docker CLI's config.json are
// owned by operators and other tools; dockca changes a handful of keys and
// must keep every other key, its value's exact text (numbers, escapes) and
// the keys' order, so that the file still means what it meant and a diff of
// it shows only dockca's change.
package jsonobj

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Object is a decoded top-level JSON object: raw values by key, plus the
// order in which keys appeared.
type Object struct {
	Keys   []string
	Values map[string]json.RawMessage
}

// ErrNotObject is returned for input that is not a single JSON object.
var ErrNotObject = errors.New("not a JSON object")

// Decode parses data, which must be exactly one JSON object. Empty or
// whitespace-only input is an empty object, since that is what an absent
// file means too. Duplicate keys are refused: which one wins differs
// between readers, and dockca will not guess.
func Decode(data []byte) (*Object, error) {
	o := &Object{Values: map[string]json.RawMessage{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return o, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotObject, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: starts with %v", ErrNotObject, tok)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotObject, err)
		}
		key := tok.(string) // inside an object the decoder only yields string keys
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: value of %q: %v", ErrNotObject, key, err)
		}
		if _, dup := o.Values[key]; dup {
			return nil, fmt.Errorf("%w: key %q appears twice", ErrNotObject, key)
		}
		o.Keys = append(o.Keys, key)
		o.Values[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotObject, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the object", ErrNotObject)
	}
	return o, nil
}

// Encode writes the object with the given indent. Keys keep their original
// order; keys that are in Values but not in Keys (added by an edit) follow,
// sorted, and keys no longer in Values are dropped.
func (o *Object) Encode(indent string) ([]byte, error) {
	var keys []string
	seen := map[string]bool{}
	for _, k := range o.Keys {
		if _, ok := o.Values[k]; ok && !seen[k] {
			keys = append(keys, k)
			seen[k] = true
		}
	}
	var added []string
	for k := range o.Values {
		if !seen[k] {
			added = append(added, k)
		}
	}
	slices.Sort(added)
	keys = append(keys, added...)

	var b bytes.Buffer
	if len(keys) == 0 {
		b.WriteString("{}\n")
		return b.Bytes(), nil
	}
	b.WriteString("{\n")
	for i, k := range keys {
		name, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		var val bytes.Buffer
		if err := json.Indent(&val, o.Values[k], indent, indent); err != nil {
			return nil, fmt.Errorf("encode %q: %w", k, err)
		}
		b.WriteString(indent)
		b.Write(name)
		b.WriteString(": ")
		b.Write(val.Bytes())
		if i < len(keys)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// Equal reports whether two raw values are the same JSON text once
// insignificant whitespace is removed. It is deliberately textual: 1.0 and 1
// differ, because the file would change.
func Equal(a, b json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}
