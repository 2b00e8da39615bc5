//! placeholder
pub mod proof;
