//! TODO(litellm helper)
