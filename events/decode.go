package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"
	"unicode/utf8"
)

// Decode parses and validates one migration event: the data of a Pub/Sub
// message on topic migration-events. Unknown fields are ignored; a field
// given twice keeps its last value; null counts as absent.
//
// Every failure is a *RejectError. On failure the returned Event holds the
// fields that could be read (for the rejection record); never act on it.
//
// Decode does not panic on any input, and it allocates little more than the
// values of the fields it knows: it checks the syntax with the standard
// library's scanner (which also limits nesting), then walks the object and
// unmarshals only those fields. Unknown, repeated or deeply nested members
// cost no memory beyond the scanner's stack.
func Decode(data []byte) (Event, error) {
	var e Event
	m, err := members(data, eventKeys)
	if err != nil {
		return e, err
	}
	var errs firstError
	e.ID = errs.str(m, "id", "id")
	e.Type = Type(errs.str(m, "type", "type"))
	e.Time = errs.time(m, "time", "time")
	e.SessionID = errs.str(m, "sessionId", "sessionId")
	e.TaskID = errs.str(m, "taskId", "taskId")
	if raw := m["snapshot"]; !isNull(raw) {
		if raw[0] != '{' {
			errs.set(invalid("snapshot", "must be an object, not "+jsonKind(raw)))
		} else if sm, err := members(raw, snapshotKeys); err != nil {
			// Unreachable: raw is part of a document already checked.
			errs.set(invalid("snapshot", err.Error()))
		} else {
			e.Snapshot = &SnapshotRef{
				Project:    errs.str(sm, "project", "snapshot.project"),
				Name:       errs.str(sm, "name", "snapshot.name"),
				SourceDisk: errs.str(sm, "sourceDisk", "snapshot.sourceDisk"),
				Retention:  errs.str(sm, "retention", "snapshot.retention"),
				ID:         errs.snapshotID(sm, "id", "snapshot.id"),
			}
		}
	}
	e.Error = errs.str(m, "error", "error")
	if errs.err != nil {
		return e, errs.err
	}
	return e, e.Validate()
}

var (
	eventKeys    = []string{"id", "type", "time", "sessionId", "taskId", "snapshot", "error"}
	snapshotKeys = []string{"project", "name", "sourceDisk", "retention", "id"}
)

// members reads the JSON object in data and returns the raw values of the
// wanted keys, as slices of data. It first checks the whole document with
// the standard decoder's scanner (which also bounds nesting), then walks the
// object's members without unmarshalling those it does not want, so a
// message padded with a million unknown or repeated keys costs no memory. A
// key given twice keeps its last value. Any problem with data as a whole is
// a *RejectError with ReasonBadJSON or ReasonTooLarge.
func members(data []byte, wanted []string) (map[string]json.RawMessage, error) {
	if len(data) > MaxEventBytes {
		return nil, &RejectError{Reason: ReasonTooLarge, Detail: fmt.Sprintf("message is %d bytes, more than %d", len(data), MaxEventBytes)}
	}
	if !utf8.Valid(data) {
		return nil, &RejectError{Reason: ReasonBadJSON, Detail: "message is not valid UTF-8"}
	}
	if err := json.Unmarshal(data, new(skipValue)); err != nil {
		return nil, badJSON(err)
	}
	w := walker{data: data}
	w.space()
	if w.peek() != '{' {
		return nil, &RejectError{Reason: ReasonBadJSON, Detail: "message must be a JSON object, not " + jsonKind(data[w.i:])}
	}
	out := make(map[string]json.RawMessage, len(wanted))
	w.i++
	for {
		w.space()
		if w.peek() == '}' {
			return out, nil
		}
		key, err := w.str()
		if err != nil {
			return nil, err
		}
		w.space()
		if w.peek() != ':' {
			return nil, errWalk
		}
		w.i++
		w.space()
		start := w.i
		if err := w.value(); err != nil {
			return nil, err
		}
		if k, ok := matchKey(key, wanted); ok {
			out[k] = data[start:w.i]
		}
		w.space()
		switch w.peek() {
		case ',':
			w.i++
		case '}':
			return out, nil
		default:
			return nil, errWalk
		}
	}
}

// errWalk means walker met something the scanner had let through: a bug,
// reported as bad JSON rather than a panic.
var errWalk = &RejectError{Reason: ReasonBadJSON, Detail: "invalid JSON object"}

// skipValue lets the JSON decoder check syntax without keeping anything.
type skipValue struct{}

// UnmarshalJSON discards the value.
func (*skipValue) UnmarshalJSON([]byte) error { return nil }

// walker steps through JSON that the standard scanner has already found
// valid. It checks bounds anyway, so a mistake cannot panic.
type walker struct {
	data []byte
	i    int
}

func (w *walker) peek() byte {
	if w.i < len(w.data) {
		return w.data[w.i]
	}
	return 0
}

func (w *walker) space() {
	for w.i < len(w.data) {
		switch w.data[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// str steps over a string and returns its raw content between the quotes.
func (w *walker) str() ([]byte, error) {
	if w.peek() != '"' {
		return nil, errWalk
	}
	start := w.i + 1
	for i := start; i < len(w.data); i++ {
		switch w.data[i] {
		case '\\':
			i++
		case '"':
			w.i = i + 1
			return w.data[start:i], nil
		}
	}
	return nil, errWalk
}

// value steps over one value of any kind.
func (w *walker) value() error {
	switch w.peek() {
	case '"':
		_, err := w.str()
		return err
	case '{', '[':
		depth := 0
		for w.i < len(w.data) {
			switch w.data[w.i] {
			case '"':
				if _, err := w.str(); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					w.i++
					return nil
				}
			}
			w.i++
		}
		return errWalk
	default: // number, true, false, null
		start := w.i
		for w.i < len(w.data) {
			switch w.data[w.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if w.i == start {
					return errWalk
				}
				return nil
			}
			w.i++
		}
		if w.i == start {
			return errWalk
		}
		return nil
	}
}

// matchKey returns the wanted key that the raw (still escaped) key raw
// spells, if any. Wanted keys are short ASCII, so the unescaping happens in
// a small fixed buffer and stops as soon as raw cannot match.
func matchKey(raw []byte, wanted []string) (string, bool) {
	if bytes.IndexByte(raw, '\\') < 0 {
		for _, k := range wanted {
			if string(raw) == k {
				return k, true
			}
		}
		return "", false
	}
	var buf [32]byte
	n := 0
	for i := 0; i < len(raw); i++ {
		if n == len(buf) {
			return "", false
		}
		c := raw[i]
		if c != '\\' {
			if c >= utf8.RuneSelf {
				return "", false
			}
			buf[n], n = c, n+1
			continue
		}
		if i+1 >= len(raw) {
			return "", false
		}
		i++
		switch raw[i] {
		case '"', '\\', '/':
			c = raw[i]
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		case 'u':
			if i+4 >= len(raw) {
				return "", false
			}
			v := 0
			for _, h := range raw[i+1 : i+5] {
				switch {
				case '0' <= h && h <= '9':
					v = v<<4 | int(h-'0')
				case 'a' <= h && h <= 'f':
					v = v<<4 | int(h-'a'+10)
				case 'A' <= h && h <= 'F':
					v = v<<4 | int(h-'A'+10)
				default:
					return "", false
				}
			}
			if v >= utf8.RuneSelf {
				return "", false
			}
			c = byte(v)
			i += 4
		default:
			return "", false
		}
		buf[n], n = c, n+1
	}
	for _, k := range wanted {
		if string(buf[:n]) == k {
			return k, true
		}
	}
	return "", false
}

func badJSON(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return &RejectError{Reason: ReasonBadJSON, Detail: fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)}
	case errors.Is(err, io.EOF):
		return &RejectError{Reason: ReasonBadJSON, Detail: "message is empty"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &RejectError{Reason: ReasonBadJSON, Detail: "JSON ends unexpectedly"}
	}
	return &RejectError{Reason: ReasonBadJSON, Detail: "invalid JSON: " + err.Error()}
}

// jsonKind names the JSON type of a raw value.
func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func isNull(raw []byte) bool { return len(raw) == 0 || string(raw) == "null" }

// firstError decodes fields one after another and keeps the first problem,
// so that a rejected message still yields every field that could be read.
type firstError struct{ err error }

func (f *firstError) set(err error) {
	if f.err == nil {
		f.err = err
	}
}

// str returns m[key] as a string; null and absent give "".
func (f *firstError) str(m map[string]json.RawMessage, key, field string) string {
	raw := m[key]
	if isNull(raw) {
		return ""
	}
	if raw[0] != '"' {
		f.set(invalid(field, "must be a string, not "+jsonKind(raw)))
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		f.set(invalid(field, "must be a string"))
		return ""
	}
	return s
}

// snapshotID returns m[key] as a snapshot id in canonical decimal; null and
// absent give "". Compute's REST JSON renders its uint64 ids as strings, and
// some producers send numbers, so both are accepted as long as they are
// written as plain decimal digits: a number such as 1e3 or 12.0 is refused
// rather than converted, because no producer that means an id writes one.
// An empty string is refused too: it is not "absent" but a bug.
func (f *firstError) snapshotID(m map[string]json.RawMessage, key, field string) string {
	raw := m[key]
	switch {
	case isNull(raw):
		return ""
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			f.set(invalid(field, "must be a string or number"))
			return ""
		}
		if !ValidSnapshotID(s) {
			f.set(invalidSnapshotID(field, quote(s)))
		}
		return s
	case raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9':
		if !ValidSnapshotID(string(raw)) {
			f.set(invalidSnapshotID(field, "the number "+excerpt(raw)))
			return ""
		}
		return string(raw)
	case raw[0] == 't' || raw[0] == 'f':
		f.set(invalidSnapshotID(field, "the boolean "+string(raw)))
		return ""
	default:
		f.set(invalidSnapshotID(field, jsonKind(raw)))
		return ""
	}
}

// excerpt returns a raw JSON number for an error detail, cut to a short
// prefix (numbers are ASCII).
func excerpt(raw []byte) string { return Cut(string(raw), 64) }

// time returns m[key] as an RFC 3339 time; null, absent and "" give the
// zero time, which Validate reports as missing.
func (f *firstError) time(m map[string]json.RawMessage, key, field string) time.Time {
	s := f.str(m, key, field)
	if s == "" {
		return time.Time{}
	}
	t, err := parseTime(s)
	if err != nil {
		f.set(invalid(field, err.Error()))
	}
	return t
}

// bool returns m[key] as a boolean; null and absent give false.
func (f *firstError) bool(m map[string]json.RawMessage, key, field string) bool {
	switch raw := m[key]; {
	case isNull(raw):
		return false
	case string(raw) == "true":
		return true
	case string(raw) == "false":
		return false
	default:
		f.set(invalid(field, "must be a boolean, not "+jsonKind(raw)))
		return false
	}
}

// rfc3339RE is RFC 3339's date-time, exactly: time.Parse alone also takes a
// comma before the fraction, and the schema's "date-time" format also takes
// a lower-case t and z and leap seconds. Both sides use this pattern, so they
// agree.
const rfc3339Pattern = `^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`

var rfc3339RE = regexp.MustCompile(rfc3339Pattern)

func parseTime(s string) (time.Time, error) {
	const want = "must be an RFC 3339 time such as 2024-05-01T12:00:00Z"
	if !rfc3339RE.MatchString(s) {
		return time.Time{}, errors.New(want)
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil { // a day or month out of range
		return time.Time{}, errors.New(want + " (no such date)")
	}
	return t, nil
}
