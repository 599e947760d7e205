//! One module per command.

pub mod awsenv;
pub mod checkout;
pub mod commit;
pub mod completions;
pub mod diff;
pub mod dirs;
pub mod doctor;
pub mod gc;
pub mod hook;
pub mod init;
pub mod lfs;
pub mod log;
pub mod login;
pub mod pull;
pub mod push;
pub mod remote;
pub mod remote_gc;
pub mod repack;
pub mod serve;
pub mod status;
pub mod track;
pub mod verify;
