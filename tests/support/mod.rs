//! Test harnesses shared by the black-box tests (each test crate uses only some of them).
#![allow(dead_code)]

pub mod cli;
pub mod moto;
pub mod procfs;
pub mod proxy;
pub mod s3;
pub mod serve;
pub mod webdriver;
