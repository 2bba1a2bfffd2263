//! Parser throughput benchmark (placeholder until the rsip comparison lands).

fn main() {}
