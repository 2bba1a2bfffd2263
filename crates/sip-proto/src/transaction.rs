//! transaction (in progress)
