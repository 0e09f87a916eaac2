// Package idempotencytest checks, in an app's tests, that the app's record type (Record and its
// references) stores the same JSON document as the domain record the app stored before, so
// records written by either read the same in the other.
package idempotencytest

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// StoredLike fails t unless rec, stored as JSON and read back into a D, converts back to rec
// with domain, and the D writes the same JSON document again (fields in any order).
func StoredLike[D, R any](t testing.TB, rec R, domain func(D) R) {
	t.Helper()
	old, err := json.Marshal(rec)
	if err != nil {
		t.Fatalf("encode %T: %v", rec, err)
	}
	var d D
	if err := json.Unmarshal(old, &d); err != nil {
		t.Fatalf("decode %s into %T: %v", old, d, err)
	}
	written, err := json.Marshal(d)
	if err != nil {
		t.Fatalf("encode %T: %v", d, err)
	}

	if diff := cmp.Diff(domain(d), rec); diff != "" {
		t.Errorf("record read back mismatch (-got +want):\n%s", diff)
	}
	var got, want map[string]any
	if err := json.Unmarshal(written, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(old, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("stored JSON mismatch (-got +want):\n%s", diff)
	}
}
