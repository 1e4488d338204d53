//! The command line: each subcommand in its own module, all of them thin.

pub mod demo;
pub mod doctor;
pub mod exec;
