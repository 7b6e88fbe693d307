//! The conf language: `parse` turns text into sections, `model` into a typed `Conf`.

pub mod acl;
pub mod app;
pub mod cidr;
pub mod cpumap;
pub mod fuzz_check;
pub mod happarse;
pub mod haproxy_comp;
pub mod haproxy_dns;
pub mod haproxy_hash;
pub mod kv;
pub mod logformat;
pub mod model;
pub mod parse;
pub mod rules;
pub mod sample;
pub mod sentinel;
pub mod tls;
pub mod unplaced;
pub mod vrrp;
pub mod web;

pub use model::*;
pub use parse::{ConfError, ConfErrors};
