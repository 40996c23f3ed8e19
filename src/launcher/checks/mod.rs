//! `doctor`: checks that everything a run needs is in place, each with PASS, FAIL or
//! SKIP, what was found, and for a failure the fix.
//!
//! Doctor's own exit status (it launches nothing unless `--in-vpc`, so the container
//! exit code table does not apply): 0 when no check failed (SKIP is not a failure),
//! 1 when at least one did, 2 for a usage or configuration error before any check.
//!
//! One module per group of checks: [`aws`] asks the AWS APIs (DescribeSecret only for
//! secrets: doctor never reads a secret's value), [`local`] looks at this machine and
//! the configuration, [`in_vpc`] turns the companion's `status` result into checks.

pub mod aws;
mod check;
pub mod image;
pub(crate) mod in_vpc;
pub mod local;
pub mod network;

pub use self::check::{Check, Status, elapsed_ms};
pub(crate) use self::check::{DoctorReport, timed};
