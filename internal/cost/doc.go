// Package cost prices jobs exactly, in integer micro-credits, from embedded,
// dated price sheets, and checks estimates against a budget.
//
// # Units
//
// Every amount is a [Credits] value: an int64 count of micro-credits
// (millionths of a credit). One credit is one US cent. No float is used
// anywhere: sheet constants such as 2.16e-6 are read as exact rationals
// (math/big), each image's or result's price is computed exactly and rounded
// once, to a whole number of micro-credits, and sums of Credits are exact.
//
// # Jobs
//
// A v1 text-to-image job costs its image price ([Sheet.ImagePrice], from its
// engine, size and steps) × samples. A Stable Image (v2beta) job costs its
// service's flat price per successful result ([Sheet.ServicePrice], from its
// service and model), once: failed and moderated requests are not charged.
//
// # Rounding
//
// The image price is rounded once, as its rule says: the 2022 table rounds
// half-up to 0.1 credit (as the published table did), the later formulas
// round up to the micro-credit (Stability billed fractions of a credit).
// Totals are never rounded.
//
// # Sheets
//
// Price sheets are YAML files in sheets/, embedded in the binary; each has
// an id, title, effective dates, source, notes and rules. A rule names v1
// engines, or Stable Image services and optionally models (exact names or
// path.Match patterns), never both; the first rule that matches a job
// prices it. A job no rule matches is an error wrapping [ErrNoPrice], never a
// zero, and so is a v1 engine retired (engine.Engine.Retired) before the
// sheet took effect ([ErrRetired]); both name the sheets that would price
// the job.
//
//   - stability-2025-08 ([DefaultSheet], from 2025-08-01): SDXL 1.0 at 0.9
//     credits up to 30 steps, else 0.9 × steps/30, and every Stable Image
//     service at its flat price (Ultra 8, Core 3, SD 3.5 Large 6.5 …).
//   - sdxl-2024 (2024-10-01 to 2025-07-31): SDXL 1.0 and SD 1.6 at 0.9
//     credits up to 30 steps, else 0.9 × steps/30.
//   - v1-2023 (2022-12-01 to 2023-10-02): Stability's published formulas,
//     (width×height − 169527) × steps/30 × 2.16e-6 for SD 1.x/2.x and × 5.4e-6
//     for SDXL beta, and the steps-only polynomial for SDXL 0.9/1.0.
//   - dreamstudio-2022 (2022-08 to 2022-11-30): the DreamStudio table,
//     steps/50 × f(width×height) with f linear in pixels between the table's
//     six sizes; all 36 cells are reproduced exactly.
//
// docs/pricing.md gives every rule's public source. A user's override file
// (--prices FILE, read by [ReadOverrides]) has the same format;
// [Sheet.WithOverrides] puts its rules ahead of the sheet's.
//
// The package reads no files except an override file, and no network.
package cost
