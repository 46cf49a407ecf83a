// Package cost prices text-to-image jobs exactly, in integer micro-credits,
// from embedded, dated price sheets, and checks estimates against a budget.
//
// The package does no I/O beyond reading a user's override sheet; every
// amount is a Credits value, never a float.
package cost
