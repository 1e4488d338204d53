//! The command line: each subcommand in its own module, all of them thin.

pub mod agent_image;
pub mod demo;
pub mod doctor;
pub mod exec;
