package runner

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkJournalAppend appends job lines to a journal from 64
// goroutines at once, as a run at concurrency 64 does, on the disk
// (TempDir) and on tmpfs; one op is one line, durable when append
// returns.
func BenchmarkJournalAppend(b *testing.B) {
	for _, place := range []struct {
		name string
		dir  func(*testing.B) string
	}{{"disk", (*testing.B).TempDir}, {"tmpfs", tmpfsDir}} {
		b.Run(place.name, func(b *testing.B) {
			j, _, err := openJournal(place.dir(b))
			if err != nil {
				b.Fatal(err)
			}
			defer j.close()
			var n atomic.Int64
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprintf("job-%07d", n.Add(1))
					if err := j.append(entry{ID: id, Key: "k-" + id, Status: Succeeded, Attempts: 1}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
