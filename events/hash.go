package events

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"time"
)

// contentHashVersion starts every hashed content. Hashes are stored (to
// tell a redelivered event from a conflicting one), so the canonical form
// below must never change without a new version.
const contentHashVersion = "snapsweep.event.v1"

// ContentHash returns a digest of e's content, as 64 lower-case hex digits
// of SHA-256: two events hash equal exactly when they mean the same thing.
// It is how a second event with an id already used is told apart: the same
// hash is a redelivery, another hash is ReasonConflictingDuplicate.
//
// The digest covers every field with meaning, in a fixed order, each value
// prefixed with its length, so no two contents run together into the same
// bytes. It is taken over the decoded values, not the JSON, so the same
// event re-encoded hashes equal whatever its whitespace, member order,
// unknown members or escapes, and whether snapshot.id came as a string or a
// number. Values are canonicalised where the contract gives one meaning to
// several spellings: the time is the instant (in UTC, RFC 3339 with
// nanoseconds, so an offset or trailing zeros in the fraction change
// nothing), and a valid snapshot.retention is the duration it denotes ("72h"
// and "4320m" are one retention). Everything else, text included, counts as
// written.
func (e Event) ContentHash() string {
	h := sha256.New()
	writeField(h, "v", contentHashVersion)
	writeField(h, "id", e.ID)
	writeField(h, "type", string(e.Type))
	writeField(h, "time", canonicalTime(e.Time))
	writeField(h, "sessionId", e.SessionID)
	writeField(h, "taskId", e.TaskID)
	if s := e.Snapshot; s != nil {
		// The member's name alone marks a snapshot as present: an event
		// without one writes nothing here, unlike one with empty fields.
		writeField(h, "snapshot", "")
		writeField(h, "snapshot.project", s.Project)
		writeField(h, "snapshot.name", s.Name)
		writeField(h, "snapshot.sourceDisk", s.SourceDisk)
		writeField(h, "snapshot.retention", canonicalRetention(s.Retention))
		writeField(h, "snapshot.id", s.ID)
	}
	writeField(h, "error", e.Error)
	return hex.EncodeToString(h.Sum(nil))
}

// writeField writes name and value, each after its length as 8 bytes big
// endian.
func writeField(h hash.Hash, name, value string) {
	var n [8]byte
	for _, s := range [2]string{name, value} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
}

func canonicalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// canonicalRetention returns a valid retention as the duration's own
// spelling ("72h0m0s"), and anything else as written behind a prefix no
// duration starts with.
func canonicalRetention(s string) string {
	if s == "" {
		return ""
	}
	d, err := parseRetention(s)
	if err != nil {
		return "invalid:" + s
	}
	return d.String()
}
