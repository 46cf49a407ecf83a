// Package cost prices text-to-image jobs exactly, in integer micro-credits,
// from embedded, dated price sheets, and checks estimates against a budget.
//
// # Units
//
// Every amount is a [Credits] value: an int64 count of micro-credits
// (millionths of a credit). One credit is one US cent. No float is used
// anywhere: sheet constants such as 2.16e-6 are read as exact rationals
// (math/big), each image's price is computed exactly and rounded once, to a
// whole number of micro-credits, and sums of Credits are exact.
//
// # Rounding
//
// A job costs its image price × samples. The image price is rounded once,
// as its rule says: the 2022 table rounds half-up to 0.1 credit (as the
// published table did), the later formulas round up to the micro-credit
// (Stability billed fractions of a credit). Totals are never rounded.
//
// # Sheets
//
// Price sheets are YAML files in sheets/, embedded in the binary; each has
// an id, title, effective dates, source, notes and rules. The first rule
// whose engines (exact ids or path.Match patterns) match an image's engine
// prices it; an engine no rule matches is an error wrapping [ErrNoPrice],
// never a zero.
//
//   - dreamstudio-2022 ([DefaultSheet], 2022-08 to 2022-11-30): the seed's
//     DreamStudio table, steps/50 × f(width×height) with f linear in pixels
//     between the table's six sizes; all 36 cells are reproduced exactly.
//   - v1-2023 (2022-12-01 to 2023-10-02): Stability's published formulas,
//     (width×height − 169527) × steps/30 × 2.16e-6 for SD 1.x/2.x and × 5.4e-6
//     for SDXL beta, and the steps-only polynomial for SDXL 0.9/1.0.
//   - sdxl-2024 (from 2024-10-01): SDXL 1.0 and SD 1.6 cost 0.9 credits up to
//     30 steps, else 0.9 × steps/30.
//
// A user's override file (--prices FILE, read by [ReadOverrides]) has the
// same format; [Sheet.WithOverrides] puts its rules ahead of the sheet's.
//
// The package reads no files except an override file, and no network.
package cost
