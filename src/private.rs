//! Helpers the derive's generated code reaches through `revolve::__private`. Not public API.

use std::error::Error as StdError;

use crate::StepError;

/// Fault injection for crash tests.
pub mod fault {
    pub use crate::fault::{abort_at_point, points_passed, set_broken_write_order};
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

/// The step of a `#[schema(from = P)]` without `step`: `TryFrom<P>` (so also `From<P>`).
///
/// # Errors
///
/// The conversion's error, wrapped in a [`StepError`].
pub fn try_from_step<P, T>(previous: P) -> Result<T, StepError>
where
    T: TryFrom<P>,
    T::Error: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    T::try_from(previous).map_err(StepError::new)
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
