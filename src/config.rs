//! Resolved settings for every stage.
