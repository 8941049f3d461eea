//! Process-wide logging: the log filter and re-levelling of client disconnects ([`levels`]),
//! the access-log file and its writer thread ([`access_file`]), and timestamps ([`time`]).

pub mod access_file;
pub mod levels;
pub mod time;
