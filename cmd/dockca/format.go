package main

// --format for the listing commands (ls, show, token ls, context ls,
// version), the way docker's CLI does it: a Go text/template executed once
// per row, `{{json .}}` for one JSON object per line, and a leading
// "table" for aligned columns under a header made from the field names.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"
)

func formatFlag() cli.Flag {
	return &cli.StringFlag{Name: "format", Usage: "print each row with the Go `TEMPLATE` ('{{json .}}', 'table {{.Name}}\\t{{.Status}}')"}
}

// outputMode checks --format against --json (and -q where the command
// has it): they choose different outputs, so two of them are a usage
// error rather than one silently winning.
func outputMode(c *cli.Context) error {
	n := 0
	for _, f := range []string{"format", "json", "quiet"} {
		if (f == "format" && c.String(f) != "") || (f != "format" && c.Bool(f)) {
			n++
		}
	}
	if n > 1 {
		return usagef("%s: --format, --json and -q cannot be combined", cmdName(c))
	}
	return nil
}

// fmtTime prints as RFC 3339 in UTC, the one time format of dockca's
// output, in templates and their JSON alike; its other methods are
// time.Time's ({{.NotAfter.Unix}}).
type fmtTime struct{ time.Time }

func (t fmtTime) String() string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func (t fmtTime) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// row is what a template sees: the Go field names of the printed value
// (embedded structs flattened), with times as fmtTime. {{json .}} prints
// the original value, so it is the object --json prints.
type row map[string]any

// rowOrig holds the original value under a key no template field can name.
const rowOrig = "\x00"

func toRow(v any) row {
	r := row{rowOrig: v}
	addFields(r, reflect.ValueOf(v))
	return r
}

var timeType = reflect.TypeOf(time.Time{})

func addFields(r row, v reflect.Value) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct && f.Type != timeType {
			addFields(r, fv)
			continue
		}
		switch {
		case f.Type == timeType:
			r[f.Name] = fmtTime{fv.Interface().(time.Time)}
		case f.Type == reflect.PointerTo(timeType):
			// Absent is the zero time, printed as nothing
			// ({{if .RevokedAt.IsZero}} tests it).
			var t time.Time
			if !fv.IsNil() {
				t = *fv.Interface().(*time.Time)
			}
			r[f.Name] = fmtTime{t}
		default:
			r[f.Name] = fv.Interface()
		}
	}
}

// header is the column title of a field: NotAfter is NOT AFTER.
func header(field string) string {
	var b strings.Builder
	rs := []rune(field)
	for i, c := range rs {
		if i > 0 && unicode.IsUpper(c) && unicode.IsLower(rs[i-1]) {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToUpper(c))
	}
	return b.String()
}

var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		if r, ok := v.(row); ok {
			v = r[rowOrig]
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "", err
		}
		return strings.TrimSuffix(b.String(), "\n"), nil
	},
	"join":  strings.Join,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"truncate": func(s string, n int) string {
		if r := []rune(s); len(r) > n && n >= 0 {
			return string(r[:n])
		}
		return s
	},
}

// writeFormatted is formatRows for a command: a bad template is a usage
// error naming the command.
func writeFormatted(c *cli.Context, rows any, format string, table func(io.Writer) error) error {
	err := formatRows(c.App.Writer, rows, format, table)
	var fe *formatError
	if errors.As(err, &fe) {
		return usagef("%s: --format: %v", cmdName(c), fe.err)
	}
	return err
}

// formatError is a template that does not parse or does not run on the
// rows: the user's input, not a failure of dockca.
type formatError struct{ err error }

func (e *formatError) Error() string { return e.err.Error() }

// formatRows prints rows (a slice of structs) with the template format.
// "table" alone is the command's default table (printed by table);
// "table TEMPLATE" aligns the columns under a header. \t and \n in the
// template are a tab and a newline, as in docker. Nothing is printed
// unless every row formats.
func formatRows(w io.Writer, rows any, format string, table func(io.Writer) error) error {
	if format == "" {
		format = "table" // --format '' is the default output, as in docker
	}
	isTable := format == "table" || strings.HasPrefix(format, "table ")
	if isTable {
		format = strings.TrimSpace(strings.TrimPrefix(format, "table"))
		if format == "" {
			if table == nil {
				return &formatError{errors.New("table needs a template after it")}
			}
			return table(w)
		}
	}
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	tmpl, err := template.New("format").Funcs(templateFuncs).Option("missingkey=error").Parse(format)
	if err != nil {
		return &formatError{err}
	}
	rv := reflect.ValueOf(rows)
	var out bytes.Buffer
	if isTable {
		// The header (printed for no rows too, as docker does) is the
		// template run over the column titles; a template that cannot run
		// on them (a method call) has none.
		h := row{}
		for k := range toRow(reflect.Zero(rv.Type().Elem()).Interface()) {
			if k != rowOrig {
				h[k] = header(k)
			}
		}
		var hb bytes.Buffer
		if tmpl.Execute(&hb, h) == nil {
			out.Write(hb.Bytes())
			out.WriteByte('\n')
		}
	}
	for i := 0; i < rv.Len(); i++ {
		if err := tmpl.Execute(&out, toRow(rv.Index(i).Interface())); err != nil {
			return &formatError{err}
		}
		out.WriteByte('\n')
	}
	if !isTable {
		_, err := w.Write(out.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if _, err := tw.Write(out.Bytes()); err != nil {
		return err
	}
	return tw.Flush()
}
