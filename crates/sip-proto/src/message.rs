//! message (in progress)

/// Parser size limits (placeholder until the parser lands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {}
