//! The operator's tools that sit above the decision core: they run rules through
//! `decision::evaluate`, so they depend on both `rules` and `decision` and neither depends on them.
//!
//! - `testing`: `pimgate rules test`, the cases kept in `*.test.yaml` beside the rules.
//! - `backtest`: `pimgate rules backtest`, recorded decisions decided again with other rules.

pub mod backtest;
pub mod testing;
