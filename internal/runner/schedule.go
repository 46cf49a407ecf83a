package runner

import (
	"container/heap"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/batch-tool/batch/internal/manifest"
)

// graph holds the jobs' dependencies by index into the jobs. As with the
// actions of cmd/go's build (cmd/go/internal/work, Builder.Do), a job waits
// for the jobs whose images it takes and for nothing else.
type graph struct {
	index      map[string]int // job id → index
	sources    [][]int        // per job: the jobs it takes images from, without repeats, in DependsOn order
	dependents [][]int        // per job: the jobs that take its images, in manifest order
	order      []int          // every job, each after its sources
}

// newGraph resolves every job's DependsOn to indexes. An id used twice, a
// source that is not among the jobs, a job taking its own image and a cycle
// are errors (the manifest refuses them first).
func newGraph(jobs []manifest.Job) (*graph, error) {
	g := &graph{index: make(map[string]int, len(jobs)), sources: make([][]int, len(jobs)), dependents: make([][]int, len(jobs))}
	for i, j := range jobs {
		if _, dup := g.index[j.ID]; dup {
			return nil, fmt.Errorf("job id %q is used twice", j.ID)
		}
		g.index[j.ID] = i
	}
	for i := range jobs {
		for _, id := range jobs[i].DependsOn() {
			s, ok := g.index[id]
			switch {
			case !ok:
				return nil, fmt.Errorf("job %s takes an image from job %q, which is not in the run", jobs[i].ID, id)
			case s == i:
				return nil, fmt.Errorf("job %s takes its own image", jobs[i].ID)
			}
			g.sources[i] = append(g.sources[i], s)
			g.dependents[s] = append(g.dependents[s], i)
		}
	}
	// Kahn's algorithm: what never becomes free of sources is in a cycle.
	left := make([]int, len(jobs))
	for i := range jobs {
		left[i] = len(g.sources[i])
		if left[i] == 0 {
			g.order = append(g.order, i)
		}
	}
	for k := 0; k < len(g.order); k++ {
		for _, d := range g.dependents[g.order[k]] {
			if left[d]--; left[d] == 0 {
				g.order = append(g.order, d)
			}
		}
	}
	if len(g.order) < len(jobs) {
		var ids []string
		for i, n := range left {
			if n > 0 {
				ids = append(ids, jobs[i].ID)
			}
		}
		return nil, fmt.Errorf("jobs %s take images from each other in a cycle", strings.Join(ids, ", "))
	}
	return g, nil
}

// task is what a worker does next: start job i, or poll its generation.
type task struct {
	i    int
	poll bool
}

// event is what a worker reports when a task ends: job i finished with
// res, or (wait) waits on the server until its next poll.
type event struct {
	i    int
	res  JobResult
	wait bool
}

// schedule is the dispatcher's state. Only the goroutine running Run
// touches it: workers get tasks and send events over channels.
type schedule struct {
	pending   []int     // per job: sources not finished yet
	finished  []bool    // per job: its result is final
	left      int       // jobs not finished
	busy      int       // tasks handed to workers and not ended
	ready     readyHeap // jobs whose sources all succeeded, earliest in the manifest first
	waiting   waitHeap  // async jobs between polls, earliest poll first
	onServer  []bool    // per job: it waits on the server for an async result
	nOnServer int
	tally     tally
}

// setup builds the schedule: jobs the journal finished are final (their
// dependents become ready, or are skipped), jobs it holds as submitted
// wait for their first poll, and the jobs without sources are ready.
func (r *run) setup(sched context.Context, resumed, pending []*entry) {
	n := len(r.jobs)
	r.results = make([]JobResult, n)
	r.async = make([]*asyncJob, n)
	s := &r.s
	s.pending, s.finished, s.onServer, s.left = make([]int, n), make([]bool, n), make([]bool, n), n
	s.waiting.async = r.async
	for i := range n {
		s.pending[i] = len(r.g.sources[i])
	}
	for i, e := range pending {
		if e != nil {
			r.async[i] = r.resumedAsync(&r.jobs[i], e)
			r.wait(i)
		}
	}
	for _, i := range r.g.order {
		if e := resumed[i]; e != nil && !s.finished[i] {
			r.finish(sched, i, resumedResult(&r.jobs[i], e))
		}
	}
	for i := range n {
		if s.pending[i] == 0 && len(r.g.sources[i]) == 0 && !s.finished[i] && !s.onServer[i] {
			heap.Push(&s.ready, i)
		}
	}
}

// dispatch hands ready jobs and due polls to the workers until every job
// is finished, then closes tasks. A due poll goes before a new job, since
// it finishes work already paid for. Once sched is done, nothing more is
// handed out: queued jobs are skipped and waiting ones stop (a rerun
// polls them).
func (r *run) dispatch(sched context.Context, tasks chan<- task, events <-chan event) {
	defer close(tasks)
	s := &r.s
	for s.left > 0 {
		if sched.Err() != nil && s.ready.Len()+s.waiting.Len() > 0 {
			r.stopQueued(sched)
			r.report()
			continue
		}
		var (
			out   chan<- task
			next  task
			timer *time.Timer
			wake  <-chan time.Time
			stop  <-chan struct{}
		)
		if s.waiting.Len() > 0 {
			i := s.waiting.peek()
			if d := time.Until(r.async[i].next); d <= 0 {
				out, next = tasks, task{i: i, poll: true}
			} else {
				timer = time.NewTimer(d)
				wake = timer.C
			}
		}
		if out == nil && s.ready.Len() > 0 {
			out, next = tasks, task{i: s.ready.peek()}
		}
		if out == nil && wake == nil && s.busy == 0 {
			r.stopStuck(sched) // unreachable: newGraph refuses cycles
			break
		}
		if sched.Err() == nil {
			stop = sched.Done()
		}
		select {
		case out <- next:
			s.busy++
			if next.poll {
				heap.Pop(&s.waiting)
			} else {
				heap.Pop(&s.ready)
			}
		case ev := <-events:
			s.busy--
			if ev.wait {
				r.wait(ev.i)
			} else {
				r.finish(sched, ev.i, ev.res)
			}
			r.report()
		case <-wake:
		case <-stop:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// wait queues async job i for its next poll at r.async[i].next.
func (r *run) wait(i int) {
	s := &r.s
	if !s.onServer[i] {
		s.onServer[i] = true
		s.nOnServer++
	}
	heap.Push(&s.waiting, i)
}

// finish records job i's final result and passes it on to its dependents:
// after a success, those whose sources have all succeeded become ready;
// otherwise they are skipped, and theirs in turn.
func (r *run) finish(sched context.Context, i int, res JobResult) {
	s := &r.s
	r.results[i] = res
	s.finished[i] = true
	s.left--
	if s.onServer[i] {
		s.onServer[i] = false
		s.nOnServer--
	}
	s.tally.add(res)
	for _, d := range r.g.dependents[i] {
		if s.finished[d] {
			continue
		}
		if res.Status == Succeeded {
			if s.pending[d]--; s.pending[d] == 0 && !s.onServer[d] {
				heap.Push(&s.ready, d)
			}
			continue
		}
		r.finish(sched, d, r.skipped(sched, d, res))
	}
}

// skipped is the result of job d, which takes an image of src, a job that
// did not succeed.
func (r *run) skipped(sched context.Context, d int, src JobResult) JobResult {
	j := &r.jobs[d]
	res := JobResult{ID: j.ID, DependsOn: j.DependsOn(), Status: Skipped, Failure: FailSource}
	switch {
	case src.Status == Failed:
		res.Error = fmt.Sprintf("source %s failed: %s", src.ID, src.Error)
	case src.Status == Filtered:
		res.Error = fmt.Sprintf("source %s was filtered: %s", src.ID, src.Error)
	case src.Failure != FailSource && sched.Err() != nil:
		// the run is stopping: say so, as for every job not started
		res.Failure, res.Error = "", notStarted(sched)
	default:
		res.Error = fmt.Sprintf("source %s was skipped: %s", src.ID, src.Error)
	}
	return res
}

// stopQueued finishes every queued job once the run is stopping: ready
// ones as not started, waiting ones as stopped while waiting.
func (r *run) stopQueued(sched context.Context) {
	s := &r.s
	for s.ready.Len()+s.waiting.Len() > 0 {
		if s.ready.Len() > 0 {
			i := heap.Pop(&s.ready).(int)
			j := &r.jobs[i]
			r.finish(sched, i, JobResult{ID: j.ID, DependsOn: j.DependsOn(), Status: Skipped, Error: notStarted(sched)})
			continue
		}
		i := heap.Pop(&s.waiting).(int)
		r.finish(sched, i, r.stopWaiting(i, stopReason(sched)))
	}
}

// stopStuck skips every unfinished job. It guards against a scheduling bug
// turning into a hang.
func (r *run) stopStuck(sched context.Context) {
	for i := range r.jobs {
		if !r.s.finished[i] {
			j := &r.jobs[i]
			r.finish(sched, i, JobResult{ID: j.ID, DependsOn: j.DependsOn(), Status: Skipped,
				Error: "not started: its sources never finished (a scheduling bug in batch, please report it)"})
		}
	}
}

// readyHeap is a min-heap of job indexes.
type readyHeap []int

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(a, b int) bool { return h[a] < h[b] }
func (h readyHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *readyHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *readyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
func (h readyHeap) peek() int { return h[0] }

// waitHeap is a min-heap of async job indexes by their next poll, then
// index.
type waitHeap struct {
	idx   []int
	async []*asyncJob
}

func (h *waitHeap) Len() int { return len(h.idx) }
func (h *waitHeap) Less(a, b int) bool {
	ta, tb := h.async[h.idx[a]].next, h.async[h.idx[b]].next
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return h.idx[a] < h.idx[b]
}
func (h *waitHeap) Swap(a, b int) { h.idx[a], h.idx[b] = h.idx[b], h.idx[a] }
func (h *waitHeap) Push(x any)    { h.idx = append(h.idx, x.(int)) }
func (h *waitHeap) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}
func (h *waitHeap) peek() int { return h.idx[0] }
