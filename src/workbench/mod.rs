//! The operator's tools that sit above the decision core: they run rules through
//! `decision::evaluate`, so they depend on both `rules` and `decision` and neither depends on them.
//!
//! - `explain`: what `pimgate evaluate` prints (text, `--json`, what `--offline` skipped);
//! - `testing`: `pimgate rules test`, the cases kept in `*.test.yaml` beside the rules.

pub mod explain;
pub mod testing;
