//! The one verdict `verify` ends with, and its exit status.

use std::fmt;

/// The graded result of verifying recordings. Ordered from best to worst: combining the
/// verdicts of several cameras keeps the worst ([`Verdict::worst`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Checked against a trusted key: the chain is whole, every file matches, and the window is
    /// covered by recordings.
    Ok,
    /// As `Ok`, but part of the window is not recorded and every missing moment is explained
    /// by a signed entry (gap with its reason, deletion by policy).
    OkWithGaps,
    /// Internally consistent, but nothing says the signing key is the station's: no trusted key
    /// was given (a key taken from the manifest itself proves nothing about who signed it).
    Untrusted,
    /// Something is altered, missing, inserted, forked, cut short, unexplained, or deleted
    /// under a legal hold.
    Failed,
}

impl Verdict {
    /// Exit status of `verify` for this verdict. 1 is left to "could not run" (unreadable
    /// path) and 2 to usage errors.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::OkWithGaps => 3,
            Verdict::Untrusted => 4,
            Verdict::Failed => 5,
        }
    }

    /// The name printed on the `result` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::OkWithGaps => "OK_WITH_GAPS",
            Verdict::Untrusted => "UNTRUSTED",
            Verdict::Failed => "FAILED",
        }
    }

    pub fn worst(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    /// The verdict of one check: `failed` wins over everything; then an untrusted key; then
    /// explained gaps.
    pub fn grade(failed: bool, trusted_key: bool, explained_gaps: bool) -> Verdict {
        if failed {
            Verdict::Failed
        } else if !trusted_key {
            Verdict::Untrusted
        } else if explained_gaps {
            Verdict::OkWithGaps
        } else {
            Verdict::Ok
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
