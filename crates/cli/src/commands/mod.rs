//! One module per command.

pub mod audit;
pub mod certs;
pub mod converge;
pub mod rotate;
