package caurl

import (
	"bufio"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	f, err := os.Open("testdata/parse.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		in, want, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("testdata line %q has no tab", line)
		}
		n++
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
	if n < 10 {
		t.Fatalf("only %d cases read", n)
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
