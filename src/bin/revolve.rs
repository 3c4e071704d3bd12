//! The `revolve` command line (being written).
fn main() {}
