package caurl

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/tabletest"
)

func TestParse(t *testing.T) {
	for _, row := range tabletest.Rows(t, "testdata/parse.txt", 2, 10) {
		in, want := row[0], row[1]
		got, err := Parse(in)
		if msg, isErr := strings.CutPrefix(want, "error: "); isErr {
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), msg) {
				t.Errorf("Parse(%q) = %q, %v; want an error with %q", in, got, err, msg)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, strings.Split(want, "|")) {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
		if back, err := Parse(Format(got)); err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("Parse(Format(%q)) = %q, %v", got, back, err)
		}
	}
}

// A single URL is recorded as before lists existed; several keep the
// first in the old field, so an older dockca still finds one.
func TestRecord(t *testing.T) {
	for _, urls := range [][]string{nil, {"https://a"}, {"https://a", "https://b"}} {
		first, all := Record(urls)
		if len(urls) == 1 && (first != urls[0] || all != nil) {
			t.Errorf("Record(%q) = %q, %q", urls, first, all)
		}
		if len(urls) > 1 && (first != urls[0] || !reflect.DeepEqual(all, urls)) {
			t.Errorf("Record(%q) = %q, %q", urls, first, all)
		}
		if back := FromRecord(first, all); !reflect.DeepEqual(back, urls) {
			t.Errorf("FromRecord(Record(%q)) = %q", urls, back)
		}
	}
}
