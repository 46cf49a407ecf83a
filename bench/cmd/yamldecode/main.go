// Command yamldecode is the bench's yardstick for planning: it reads a YAML
// file and decodes it with gopkg.in/yaml.v3 into an empty interface or a
// yaml.Node, and nothing else, so its time and peak memory are the cost of
// reading the manifest.
//
// Usage:
//
//	yamldecode [-into any|node] FILE
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

	"gopkg.in/yaml.v3"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("yamldecode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	into := fs.String("into", "any", "decode into `any` (maps, slices, scalars) or node (a yaml.Node tree)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: yamldecode [-into any|node] FILE")
		return 2
	}
	if err := decode(fs.Arg(0), *into); err != nil {
		fmt.Fprintf(stderr, "yamldecode: %v\n", err)
		return 1
	}
	return 0
}

// decode reads path and unmarshals it into a value of the kind into names,
// keeping the value alive to the end, as a planner keeps what it decoded.
func decode(path, into string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var v any
	switch into {
	case "any":
		v = new(any)
	case "node":
		v = new(yaml.Node)
	default:
		return fmt.Errorf("-into %q: want any or node", into)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	runtime.KeepAlive(v)
	return nil
}
