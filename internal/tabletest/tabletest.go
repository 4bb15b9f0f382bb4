// Package tabletest reads the testdata tables of table-driven tests: one
// case a line, fields separated by tabs, blank lines and lines starting
// with # skipped. One reader, so every table has the same rules.
package tabletest

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// Rows returns the cases of the table at path, each with exactly fields
// fields; a line with another count fails the test, and so does a table
// of fewer than min cases (a table that did not load must not pass).
func Rows(t testing.TB, path string, fields, min int) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		row := strings.Split(line, "\t")
		if len(row) != fields {
			t.Fatalf("%s: line %q has %d tab-separated fields, want %d", path, line, len(row), fields)
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) < min {
		t.Fatalf("%s: only %d cases read", path, len(rows))
	}
	return rows
}
