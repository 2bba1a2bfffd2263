//! header (in progress)
