//! Atelier: the whole backend of an AI product-photo studio in one binary.
//!
//! Dependencies point one way: [`http`] → [`actors`] → [`db`] → [`domain`].

pub mod actors;
pub mod alipay;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod fetch;
pub mod generation;
pub mod http;
pub mod ops;
pub mod providers;
pub mod storage;
pub mod stripe;
