//! Helpers the derive's generated code reaches through `revolve::__private`. Not public API.

use std::error::Error as StdError;

use crate::StepError;

/// Fault injection for crash tests.
pub mod fault {
    pub use crate::fault::{
        abort_at_point, lose_commit_reply, points_passed, poison, set_broken_write_order,
    };
}

/// Compares two strings in a constant context, for the derive's compile-time chain checks.
#[must_use]
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The step of a `#[schema(from = P)]` without `step`: `TryFrom<P>` (so also `From<P>`) with an
/// error a [`StepError`] can hold.
///
/// A trait of its own, called directly by the generated code, so that a missing conversion is
/// reported as such rather than as an unsatisfied `From<P>` bound.
#[diagnostic::on_unimplemented(
    message = "`from = {P}` without `step` needs a conversion: `{Self}` implements neither \
               `From<{P}>` nor `TryFrom<{P}>`",
    label = "no conversion from `{P}` into `{Self}`",
    note = "add `step = your_fn` with `fn({P}) -> Result<{Self}, revolve::StepError>`, or \
            implement `From<{P}>` or `TryFrom<{P}>` for `{Self}`"
)]
pub trait FromPrevious<P>: Sized {
    /// Converts with `TryFrom`.
    ///
    /// # Errors
    ///
    /// The conversion's error, wrapped in a [`StepError`].
    fn from_previous(previous: P) -> Result<Self, StepError>;
}

impl<P, T> FromPrevious<P> for T
where
    T: TryFrom<P>,
    T::Error: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    fn from_previous(previous: P) -> Result<Self, StepError> {
        T::try_from(previous).map_err(StepError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::str_eq;

    #[test]
    fn str_eq_compares_bytes() {
        assert!(str_eq("issues", "issues"));
        assert!(!str_eq("issues", "issue"));
        assert!(!str_eq("issues", "Issues"));
        assert!(str_eq("", ""));
    }
}
