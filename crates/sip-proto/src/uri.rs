//! uri (in progress)
