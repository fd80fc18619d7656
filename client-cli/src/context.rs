//! The global options every command runs with (the servers to reach, `--json`,
//! `--verbose`), in a file of its own so that `commands` and `follow` both
//! take it from here rather than from each other.

use crate::settings::Settings;

/// The global options every command needs.
#[derive(Debug)]
pub struct Context {
    /// The servers and the TLS files to reach them with.
    pub server: Settings,
    pub json: bool,
    pub verbose: bool,
}
