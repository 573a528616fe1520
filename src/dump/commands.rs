//! Re-creating a key with plain commands (placeholder).
#[derive(Debug, Clone)]
pub struct CommandOptions {}
