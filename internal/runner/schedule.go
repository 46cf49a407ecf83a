package runner

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/batch-tool/batch/internal/manifest"
)

// graph holds the jobs' dependencies by index into the jobs, in a few
// bytes a job: the jobs' ids are found through an idIndex, and sources and
// dependents are kept only when some job takes images from another. As
// with the actions of cmd/go's build (cmd/go/internal/work, Builder.Do), a
// job waits for the jobs whose images it takes and for nothing else.
type graph struct {
	n   int
	ids *idIndex
	// srcAt and src list the sources of job i, without repeats, in
	// DependsOn order, as src[srcAt[i]:srcAt[i+1]]; depAt and dep its
	// dependents in manifest order. All four are nil when no job has a
	// source.
	srcAt, src, depAt, dep []int32
	// order is every job, each after its sources; nil when no job has a
	// source (then the jobs' own order is one).
	order []int32
}

// sources returns the indexes of the jobs job i takes images from.
func (g *graph) sources(i int) []int32 {
	if g.srcAt == nil {
		return nil
	}
	return g.src[g.srcAt[i]:g.srcAt[i+1]]
}

// dependents returns the indexes of the jobs that take images from job i.
func (g *graph) dependents(i int) []int32 {
	if g.depAt == nil {
		return nil
	}
	return g.dep[g.depAt[i]:g.depAt[i+1]]
}

// at is the k-th job of the order in which sources come first.
func (g *graph) at(k int) int {
	if g.order == nil {
		return k
	}
	return int(g.order[k])
}

// newGraph resolves every job's DependsOn to indexes, fetching each job
// once, or twice when some job takes images from another. visit, when not
// nil, is called with each job of the first pass, in order. An id used
// twice, a source that is not among the jobs, a job taking its own image
// and a cycle are errors (the manifest refuses them first).
func newGraph(jobs Jobs, visit func(i int, j *manifest.Job)) (*graph, error) {
	linked := false
	ids, err := newIDIndex(jobs, func(i int, j *manifest.Job) {
		linked = linked || slices.ContainsFunc(j.Inputs, func(in manifest.Input) bool { return in.From != "" })
		if visit != nil {
			visit(i, j)
		}
	})
	if err != nil {
		return nil, err
	}
	n := jobs.Len()
	g := &graph{n: n, ids: ids}
	if !linked {
		return g, nil
	}
	type edge struct{ dep, src int32 }
	var edges []edge // by dependent, then in DependsOn order
	for i := range n {
		j := jobs.Job(i)
		for _, id := range j.DependsOn() {
			s, ok := ids.find(id)
			switch {
			case !ok:
				return nil, fmt.Errorf("job %s takes an image from job %q, which is not in the run", j.ID, id)
			case s == i:
				return nil, fmt.Errorf("job %s takes its own image", j.ID)
			}
			edges = append(edges, edge{dep: int32(i), src: int32(s)})
		}
	}
	if len(edges) == 0 {
		return g, nil
	}
	g.srcAt, g.depAt = make([]int32, n+1), make([]int32, n+1)
	for _, e := range edges {
		g.srcAt[e.dep+1]++
		g.depAt[e.src+1]++
	}
	for i := range n {
		g.srcAt[i+1] += g.srcAt[i]
		g.depAt[i+1] += g.depAt[i]
	}
	g.src, g.dep = make([]int32, len(edges)), make([]int32, len(edges))
	fill := slices.Clone(g.depAt[:n])
	for k, e := range edges {
		g.src[k] = e.src // edges are grouped by dependent already
		g.dep[fill[e.src]] = e.dep
		fill[e.src]++
	}
	// Kahn's algorithm: what never becomes free of sources is in a cycle.
	left := make([]int32, n)
	g.order = make([]int32, 0, n)
	for i := range n {
		left[i] = g.srcAt[i+1] - g.srcAt[i]
		if left[i] == 0 {
			g.order = append(g.order, int32(i))
		}
	}
	for k := 0; k < len(g.order); k++ {
		for _, d := range g.dependents(int(g.order[k])) {
			if left[d]--; left[d] == 0 {
				g.order = append(g.order, d)
			}
		}
	}
	if len(g.order) < n {
		var ids []string
		for i, l := range left {
			if l > 0 {
				ids = append(ids, jobs.Job(i).ID)
			}
		}
		return nil, fmt.Errorf("jobs %s take images from each other in a cycle", strings.Join(ids, ", "))
	}
	return g, nil
}

// task is what a worker does next: start job i, with the images of its
// sources (inputs[k] those of its k-th source, in DependsOn order), or poll
// its generation (a is the job's state on the server).
type task struct {
	i      int
	inputs [][]Image
	a      *asyncJob // set for a poll
}

// event is what a worker reports when a task ends: job i finished with
// res, or waits on the server until its next poll (a is set).
type event struct {
	i   int
	res JobResult
	a   *asyncJob
}

// jobState is a job's place in the schedule, one byte a job.
type jobState uint8

const (
	jobWaiting  jobState = iota // its sources are not done; or, for a job without sources, not handed out yet
	jobRunning                  // handed to a worker
	jobOnServer                 // an async job waiting on the server for its next poll
	jobDone                     // its result is final and was reported
)

// schedule is the dispatcher's state. Only the goroutine running Run
// touches it: workers get tasks and send events over channels. It holds a
// few bytes per job; results leave through Config.Finished as jobs end.
type schedule struct {
	state []jobState // per job
	// pending is, per job, its sources not finished yet; nil when no job
	// has a source.
	pending []int32
	left    int // jobs not finished
	busy    int // tasks handed to workers and not ended
	// next is the first job without sources that may not have been handed
	// out: those jobs are ready from the start, in manifest order, so they
	// need no queue.
	next  int
	ready readyHeap // jobs with sources whose sources all succeeded
	// waiting holds the async jobs between polls, earliest poll first;
	// async is the state of every job waiting on the server, by index.
	waiting   waitHeap
	async     map[int]*asyncJob
	nOnServer int
	// images holds the images of succeeded jobs that have dependents not
	// finished yet, and readers how many of those dependents are not.
	images  map[int][]Image
	readers map[int]int32
	tally   tally
}

// setup builds the schedule: jobs the journal finished are final (their
// dependents become ready, or are skipped), jobs it holds as submitted
// wait for their first poll, and the jobs without sources are ready. The
// error is the journal's, when a job's line cannot be read again.
func (r *run) setup(sched context.Context, rec *recovery) error {
	n := r.jobs.Len()
	s := &r.s
	s.state, s.left = make([]jobState, n), n
	s.async, s.images, s.readers = map[int]*asyncJob{}, map[int][]Image{}, map[int]int32{}
	if r.g.srcAt != nil {
		s.pending = make([]int32, n)
		for i := range n {
			s.pending[i] = int32(len(r.g.sources(i)))
		}
	}
	for _, i := range rec.pendingJobs() {
		j := r.jobs.Job(i)
		e, err := rec.entry(j.ID)
		if err != nil {
			return err
		}
		r.wait(r.resumedAsync(i, &j, &e))
	}
	for k := range n {
		i := r.g.at(k)
		if rec.state[i]&recResumed != 0 && s.state[i] != jobDone {
			j := r.jobs.Job(i)
			e, err := rec.entry(j.ID)
			if err != nil {
				return err
			}
			r.finish(sched, i, resumedResult(&j, &e))
		}
	}
	return nil
}

// peekReady returns the ready job earliest in the manifest, and whether
// there is one.
func (r *run) peekReady() (int, bool) {
	s := &r.s
	for s.next < len(s.state) && (s.state[s.next] != jobWaiting || len(r.g.sources(s.next)) > 0) {
		s.next++
	}
	switch {
	case s.next < len(s.state) && (s.ready.Len() == 0 || s.next < int(s.ready.peek())):
		return s.next, true
	case s.ready.Len() > 0:
		return int(s.ready.peek()), true
	}
	return 0, false
}

// popReady takes job i, which peekReady returned, off the ready jobs.
func (r *run) popReady(i int) {
	s := &r.s
	if s.ready.Len() > 0 && int(s.ready.peek()) == i {
		heap.Pop(&s.ready)
	}
	s.state[i] = jobRunning
}

// inputsOf returns the images of job i's sources, in DependsOn order.
func (r *run) inputsOf(i int) [][]Image {
	srcs := r.g.sources(i)
	if len(srcs) == 0 {
		return nil
	}
	in := make([][]Image, len(srcs))
	for k, src := range srcs {
		in[k] = r.s.images[int(src)]
	}
	return in
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
		_, anyReady := r.peekReady()
		if sched.Err() != nil && (anyReady || s.waiting.Len() > 0) {
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
			a := s.waiting.peek()
			if d := time.Until(a.next); d <= 0 {
				out, next = tasks, task{i: a.i, a: a}
			} else {
				timer = time.NewTimer(d)
				wake = timer.C
			}
		}
		if i, ok := r.peekReady(); out == nil && ok {
			out, next = tasks, task{i: i, inputs: r.inputsOf(i)}
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
			if next.a != nil {
				heap.Pop(&s.waiting)
				s.state[next.i] = jobRunning
			} else {
				r.popReady(next.i)
			}
		case ev := <-events:
			s.busy--
			if ev.a != nil {
				r.wait(ev.a)
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

// wait queues async job a.i for its next poll at a.next.
func (r *run) wait(a *asyncJob) {
	s := &r.s
	if s.async[a.i] == nil {
		s.async[a.i] = a
		s.nOnServer++
	}
	s.state[a.i] = jobOnServer
	heap.Push(&s.waiting, a)
}

// finish records job i's final result, tells Config.Finished, and passes
// it on to its dependents: after a success, those whose sources have all
// succeeded become ready; otherwise they are skipped, and theirs in turn.
func (r *run) finish(sched context.Context, i int, res JobResult) {
	s := &r.s
	s.state[i] = jobDone
	s.left--
	if s.async[i] != nil {
		delete(s.async, i)
		s.nOnServer--
	}
	s.tally.add(res)
	for _, src := range r.g.sources(i) {
		// the images of a source are kept until its last dependent ends
		if n, ok := s.readers[int(src)]; ok {
			if n <= 1 {
				delete(s.readers, int(src))
				delete(s.images, int(src))
			} else {
				s.readers[int(src)] = n - 1
			}
		}
	}
	deps := r.g.dependents(i)
	if res.Status == Succeeded {
		var n int32
		for _, d := range deps {
			if s.state[d] != jobDone {
				n++
			}
		}
		if n > 0 {
			s.images[i], s.readers[i] = res.Images, n
		}
	}
	r.tell(i, res)
	for _, d := range deps {
		if s.state[d] == jobDone {
			continue
		}
		if res.Status == Succeeded {
			if s.pending[d]--; s.pending[d] == 0 && s.state[d] == jobWaiting {
				heap.Push(&s.ready, d)
			}
			continue
		}
		r.finish(sched, int(d), r.skipped(sched, int(d), res))
	}
}

// tell hands job i's result to Config.Finished; an error there stops the
// run as a file that cannot be written here does.
func (r *run) tell(i int, res JobResult) {
	r.reported++
	if r.cfg.Finished == nil {
		return
	}
	if err := r.cfg.Finished(i, res); err != nil {
		r.failLocal(fmt.Errorf("job %s: result not recorded: %w", res.ID, err))
	}
}

// skipped is the result of job d, which takes an image of src, a job that
// did not succeed.
func (r *run) skipped(sched context.Context, d int, src JobResult) JobResult {
	j := r.jobs.Job(d)
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
	for {
		if i, ok := r.peekReady(); ok {
			r.popReady(i)
			j := r.jobs.Job(i)
			r.finish(sched, i, JobResult{ID: j.ID, DependsOn: j.DependsOn(), Status: Skipped, Error: notStarted(sched)})
			continue
		}
		if s.waiting.Len() == 0 {
			return
		}
		a := heap.Pop(&s.waiting).(*asyncJob)
		r.finish(sched, a.i, r.stopWaiting(a, stopReason(sched)))
	}
}

// stopStuck skips every unfinished job. It guards against a scheduling bug
// turning into a hang.
func (r *run) stopStuck(sched context.Context) {
	for i, st := range r.s.state {
		if st != jobDone {
			j := r.jobs.Job(i)
			r.finish(sched, i, JobResult{ID: j.ID, DependsOn: j.DependsOn(), Status: Skipped,
				Error: "not started: its sources never finished (a scheduling bug in batch, please report it)"})
		}
	}
}

// readyHeap is a min-heap of job indexes.
type readyHeap []int32

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(a, b int) bool { return h[a] < h[b] }
func (h readyHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *readyHeap) Push(x any)        { *h = append(*h, x.(int32)) }
func (h *readyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
func (h readyHeap) peek() int32 { return h[0] }

// waitHeap is a min-heap of async jobs by their next poll, then index.
type waitHeap []*asyncJob

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(a, b int) bool {
	if !h[a].next.Equal(h[b].next) {
		return h[a].next.Before(h[b].next)
	}
	return h[a].i < h[b].i
}
func (h waitHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *waitHeap) Push(x any)   { *h = append(*h, x.(*asyncJob)) }
func (h *waitHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
func (h waitHeap) peek() *asyncJob { return h[0] }
