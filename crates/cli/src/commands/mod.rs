//! One module per command.

pub mod certs;
pub mod converge;
pub mod rotate;
