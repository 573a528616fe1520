//! Pure decisions: which path a payload takes on a target, what a
//! selection costs in server memory.
