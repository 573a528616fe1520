//! The archive sink: records in, a `.kbd` archive out.
