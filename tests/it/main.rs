//! Integration tests: real nodes on 127.0.0.1:0, real RocksDB, tonic clients.

mod admin;
mod architecture;
mod backup;
mod badinput;
mod batch;
mod bulk;
mod classification;
mod cli;
mod console;
mod crash;
mod dns;
mod federation;
mod http;
mod limits;
mod offline;
mod registry;
mod security;
mod setup;
mod site;
mod support;
