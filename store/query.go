package store

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// rangeField returns the field the query ranges or orders on, and the bound.
func (q Query) rangeField() (string, time.Time, error) {
	var field string
	var bound time.Time
	n := 0
	if !q.ExpiresBefore.IsZero() {
		field, bound = "expiresAt", q.ExpiresBefore
		n++
	}
	if !q.UpdatedBefore.IsZero() {
		field, bound = "updatedAt", q.UpdatedBefore
		n++
	}
	if !q.CreatedBefore.IsZero() {
		field, bound = "createdAt", q.CreatedBefore
		n++
	}
	if n > 1 {
		return "", time.Time{}, fmt.Errorf("query ranges over %d fields, at most one is allowed", n)
	}
	if n == 0 && q.OrderByCreated {
		field = "createdAt"
	}
	return field, bound, nil
}

// Shape returns the name of the query shape q runs as, or an error when no
// declared shape (and so no declared index) serves it.
func (q Query) Shape() (string, error) {
	if q.TaskID != "" && q.SessionID == "" {
		return "", fmt.Errorf("query by task needs the session id")
	}
	field, _, err := q.rangeField()
	if err != nil {
		return "", err
	}
	var fields []string
	if q.SessionID != "" {
		fields = append(fields, "sessionId")
	}
	if q.TaskID != "" {
		fields = append(fields, "taskId")
	}
	if len(q.States) > 0 {
		fields = append(fields, "state")
	}
	if field != "" {
		fields = append(fields, field)
	}
	for _, s := range QueryShapes() {
		if s.Collection != CollectionSnapshots || len(s.Fields) != len(fields) {
			continue
		}
		match := true
		for i, f := range s.Fields {
			if f.Path != fields[i] {
				match = false
				break
			}
		}
		if match {
			return s.Name, nil
		}
	}
	if len(fields) == 0 {
		return "", fmt.Errorf("unfiltered snapshot query: set a filter or OrderByCreated")
	}
	return "", fmt.Errorf("no index declared for a snapshot query on (%s)", strings.Join(fields, ", "))
}

// matches reports whether s satisfies q's filters (used by Memory and tests).
func (q Query) matches(s *Snapshot) bool {
	if q.SessionID != "" && s.SessionID != q.SessionID {
		return false
	}
	if q.TaskID != "" && s.TaskID != q.TaskID {
		return false
	}
	if len(q.States) > 0 && !slices.Contains(q.States, s.State) {
		return false
	}
	if !q.ExpiresBefore.IsZero() && (s.ExpiresAt.IsZero() || s.ExpiresAt.After(q.ExpiresBefore)) {
		return false
	}
	if !q.UpdatedBefore.IsZero() && s.UpdatedAt.After(q.UpdatedBefore) {
		return false
	}
	if !q.CreatedBefore.IsZero() && s.CreatedAt.After(q.CreatedBefore) {
		return false
	}
	return true
}

// orderValue is the value of the query's order field on s.
func orderValue(field string, s *Snapshot) time.Time {
	switch field {
	case "expiresAt":
		return s.ExpiresAt
	case "updatedAt":
		return s.UpdatedAt
	case "createdAt":
		return s.CreatedAt
	}
	return time.Time{}
}

// cursor is the position after the last document of a page: the order
// field's value (when the query orders by one) and the document id.
type cursor struct {
	T  time.Time `json:"t,omitzero"`
	ID string    `json:"id"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return c, fmt.Errorf("bad cursor: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("bad cursor: %w", err)
	}
	return c, nil
}
