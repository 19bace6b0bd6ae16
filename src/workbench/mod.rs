//! The operator's tools that sit above the decision core: they run rules through
//! `decision::evaluate`, so they depend on both `rules` and `decision` and neither depends on them.
//!
//! - `explain`: what `pimgate evaluate` prints (text, `--json`, what `--offline` skipped);
//! - `testing`: `pimgate rules test`, the cases kept in `*.test.yaml` beside the rules.
//! - `reference`: `pimgate rules reference`, the rule reference generated from the code.
//! - `roles`: `pimgate roles`, the built-in role catalog with ids and tiers.
//! - `backtest`: `pimgate rules backtest`, recorded decisions decided again with other rules.

pub mod backtest;
pub mod explain;
pub mod reference;
pub mod roles;
pub mod testing;
