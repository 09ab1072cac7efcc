package store_test

import (
	"testing"

	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/store/storetest"
)

func TestMemoryContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store { return store.NewMemory() })
}
