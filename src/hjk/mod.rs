//! The Headjack workflows: `hjk images build | list | resolve`.

pub mod config;
pub mod images;
pub mod resolve;
pub mod variants;
