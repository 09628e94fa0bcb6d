//! Written on branch anth-b.
