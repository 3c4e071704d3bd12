//! Error chains as text: the one formatter the HTTP layer, migrations and the command lines share.
//! A leaf: it imports nothing of the crate, so every layer may use it without an import loop.

/// An error and its sources on one line, joined by `: ` (`cannot open: permission denied`): the
/// one formatter of error chains that the HTTP layer, migrations and the command lines share.
pub(crate) struct Chain<'a>(pub(crate) &'a dyn std::error::Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// [`Chain`] as a `String`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    Chain(error).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_joins_an_error_and_its_sources() {
        let error = Outer(std::io::Error::other("permission denied"));
        assert_eq!(chain(&error), "cannot open the store: permission denied");
        assert_eq!(chain(&std::io::Error::other("alone")), "alone");
    }
}
