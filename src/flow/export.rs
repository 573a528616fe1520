//! Export: a live source joined to an archive sink.
