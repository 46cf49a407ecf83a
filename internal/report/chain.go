package report

import "slices"

// A chain is one pipeline as the HTML report lays it out, left to right:
// steps[0] holds the jobs that start it and the last step its final job;
// every job stands one step after the latest of the jobs it takes images
// from. Jobs are node numbers: 0..len(jobs)-1 are the run's jobs in report
// order, len(jobs)+i is missing[i] of the layout.
type chain struct {
	steps [][]int
}

// chainLayout is every chain of a run.
type chainLayout struct {
	chains []chain
	// missing are ids that jobs take images from but that the report does
	// not hold (jobs of another shard), in order of first mention.
	missing []string
	// shown tells, per job, whether a chain shows it; nil when no job
	// takes images from another.
	shown []bool
}

// showsJob reports whether a chain shows job i; the others keep the
// report's plain image grid.
func (l chainLayout) showsJob(i int) bool { return l.shown != nil && l.shown[i] }

// chainGraph is the dependency graph of a run's jobs.
type chainGraph struct {
	deps    [][]int // node → the nodes it takes images from, without repeats or itself
	missing []string
	shown   []bool
}

// chains lays out the pipelines of jobs, in the order of their final jobs:
// one for every job that takes images from another job and that no job
// takes images from, tracing back through all of its sources. A job that
// is both a source and a dependent therefore shows inside the chains of
// its dependents, and a source with several dependents in each of them. A
// cycle (only a hand-edited report can hold one) is cut where the walk
// meets it, so every job still shows.
func chains(jobs []RunJob) chainLayout {
	nodes := make([]chainNode, len(jobs))
	for i, j := range jobs {
		nodes[i] = chainNode{j.ID, j.DependsOn}
	}
	return chainsOf(nodes)
}

// chainNode is what a chain needs of a job: its id and the ids of the jobs
// it takes images from.
type chainNode struct {
	id   string
	deps []string
}

// chainsOf is chains of jobs given as nodes.
func chainsOf(jobs []chainNode) chainLayout {
	if !slices.ContainsFunc(jobs, func(j chainNode) bool { return len(j.deps) > 0 }) {
		return chainLayout{} // no id map for the million-job report without pipelines
	}
	g := newChainGraph(jobs)
	var out []chain
	hasDependents := make([]bool, len(jobs))
	for _, ds := range g.deps {
		for _, d := range ds {
			if d < len(jobs) {
				hasDependents[d] = true
			}
		}
	}
	for i := range jobs {
		if len(g.deps[i]) > 0 && !hasDependents[i] {
			out = append(out, g.trace(i))
		}
	}
	// Jobs that depend on others yet are left out are on a cycle with no
	// end: start a chain at each, in report order.
	for i := range jobs {
		if len(g.deps[i]) > 0 && !g.shown[i] {
			out = append(out, g.trace(i))
		}
	}
	return chainLayout{chains: out, missing: g.missing, shown: g.shown}
}

func newChainGraph(jobs []chainNode) *chainGraph {
	g := &chainGraph{deps: make([][]int, len(jobs)), shown: make([]bool, len(jobs))}
	node := make(map[string]int, len(jobs))
	for i, j := range jobs {
		if _, dup := node[j.id]; !dup {
			node[j.id] = i
		}
	}
	for i, j := range jobs {
		for _, id := range j.deps {
			n, ok := node[id]
			if !ok {
				n = len(jobs) + len(g.missing)
				node[id] = n
				g.missing = append(g.missing, id)
				g.deps = append(g.deps, nil)
			}
			if n != i && !slices.Contains(g.deps[i], n) {
				g.deps[i] = append(g.deps[i], n)
			}
		}
	}
	return g
}

// trace lays out the chain that ends at job last and marks its jobs shown.
//
// Each job's step is set by its longest path to last, so a source feeding
// jobs at two depths stands before both. A depth-first walk over the
// sources gives the post-order; in its reverse, every job comes before its
// sources except along the edges that close a cycle, which are ignored.
func (g *chainGraph) trace(last int) chain {
	type frame struct{ node, next int }
	const (
		unseen = iota
		open
		closed
	)
	state := map[int]int{last: open}
	stack := []frame{{node: last}}
	var post []int
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.next < len(g.deps[f.node]) {
			d := g.deps[f.node][f.next]
			f.next++
			if state[d] == unseen {
				state[d] = open
				stack = append(stack, frame{node: d})
			}
			continue
		}
		state[f.node] = closed
		post = append(post, f.node)
		stack = stack[:len(stack)-1]
	}
	rank := make(map[int]int, len(post)) // position in reverse post-order
	for k, n := range post {
		rank[n] = len(post) - 1 - k
	}
	depth := map[int]int{last: 0}
	deepest := 0
	for k := len(post) - 1; k >= 0; k-- {
		n := post[k]
		for _, d := range g.deps[n] {
			if rank[d] > rank[n] { // not an edge back into a cycle
				depth[d] = max(depth[d], depth[n]+1)
				deepest = max(deepest, depth[d])
			}
		}
	}
	c := chain{steps: make([][]int, deepest+1)}
	for _, n := range post {
		step := deepest - depth[n]
		c.steps[step] = append(c.steps[step], n)
		if n < len(g.shown) {
			g.shown[n] = true
		}
	}
	for _, s := range c.steps {
		slices.Sort(s) // report order; missing jobs last
	}
	return c
}
