package jsonobj

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestRoundTripKeepsOrderAndText(t *testing.T) {
	in := `{"b": 1.50, "a": {"z": 1, "y": [1e3]}, "c": "\u00e9"}`
	o, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	o.Values["new"] = json.RawMessage(`true`)
	delete(o.Values, "a")
	out, err := o.Encode("  ")
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"b\": 1.50,\n  \"c\": \"\\u00e9\",\n  \"new\": true\n}\n"
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}

func TestDecode(t *testing.T) {
	for in, ok := range map[string]bool{
		"":               true,
		"  \n":           true,
		"{}":             true,
		`{"a":1}`:        true,
		`[]`:             false,
		`"x"`:            false,
		`{"a":1`:         false,
		`{"a":1}{}`:      false,
		`{"a":1,"a":2}`:  false,
		`{"a":1,}`:       false,
		`{"a": tru}`:     false,
		`{"a":1} // no`:  false,
		`{"a":{"b":1,}}`: false,
	} {
		_, err := Decode([]byte(in))
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrNotObject)) {
			t.Errorf("Decode(%q): %v", in, err)
		}
	}
}

func TestEqual(t *testing.T) {
	if !Equal(json.RawMessage(`[1, 2]`), json.RawMessage("[1,2]")) || Equal(json.RawMessage(`1.0`), json.RawMessage(`1`)) || Equal(nil, json.RawMessage(`null`)) {
		t.Fatal("Equal is not textual modulo whitespace")
	}
}
