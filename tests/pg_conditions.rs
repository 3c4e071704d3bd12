//! Bad conditions on the PostgreSQL engine: typed errors, never a panic or a hang.
