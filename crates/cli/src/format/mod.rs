//! Output formatting shared by all command groups: tabwriter, go-units, Go-style JSON and
//! `--format` templates.
pub mod json;
pub mod tabwriter;
pub mod template;
pub mod units;

pub use template::{Format, Row};

/// docker's TruncateID: drop the algorithm prefix, keep 12 characters.
pub fn short_id(id: &str) -> String {
    let id = id.split_once(':').map_or(id, |(_, h)| h);
    id.chars().take(12).collect()
}
