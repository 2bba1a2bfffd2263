//! rtcp
