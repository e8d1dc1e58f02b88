#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test here

//! Black-box tests of the receiver and the CLI, against real HTTP, real sled directories and
//! real child processes.

mod audit;
mod cli;
mod connections;
mod console;
mod hardening;
mod helpers;
mod logs;
mod receiver;
mod review;
mod secrets;
mod session;
mod upgrade;
