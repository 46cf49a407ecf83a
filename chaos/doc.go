// Package chaos holds end-to-end tests that run the built batch binary
// against hostile servers, files and machines, and check after every run
// what must stay true whatever happened: nothing is paid for twice (charges
// are counted at the server, per job), the budget is never passed across
// all the runs of one output folder, the journal, report.json and the files
// in images/ agree, and the API key is in no file and no output.
//
// The servers are the sandbox (package sandbox) started in-process, with
// its injected failures, drops, rate limit and balance, behind a proxy that
// counts every charge per job and misbehaves where the sandbox cannot:
// it echoes the key in headers and JSON, answers 401 after some requests,
// reports a stale balance, sends images of the wrong size, truncated, with a
// finish reason of ERROR, stalls a body, or asks for a pause of eleven
// days. The machines are small tmpfs mounts (a full disk, a read-only
// folder), symlinks inside the output folder, a FIFO as manifest, two runs
// on one output folder, SIGHUP, and SIGKILLs at moments drawn from a seeded
// random source, so a failure can be replayed.
//
// The package has no code of its own: everything is in its tests, which
// `go test ./...` runs. Tests that need a tmpfs mount skip without the
// privilege to mount one, and fail without it when CI=true.
package chaos
