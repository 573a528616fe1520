//! JSON form (placeholder).
#[derive(Debug)]
pub struct JsonError;
