//! TODO(store helper)
