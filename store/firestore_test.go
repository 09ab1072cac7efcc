package store_test

import (
	"context"
	"testing"

	"cloud.google.com/go/firestore"

	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/store/storetest"
)

func TestMain(m *testing.M) { emulators.Main(m, emulators.Firestore) }

// newFirestore returns a store in a project of its own on the emulator.
func newFirestore(t *testing.T) *store.Firestore {
	t.Helper()
	emulators.Require(t, emulators.Firestore)
	client, err := firestore.NewClient(context.Background(), emulators.ProjectID(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return store.NewFirestore(client)
}

func TestFirestoreContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store { return newFirestore(t) })
}
