/*!
The command line: the flags ([`args`]), running them ([`app`]) on one hypervisor or across
a fleet ([`fleet`]), and the completion scripts
and man pages made from them ([`docs`]).
*/

pub mod app;
pub mod args;
pub mod bulk;
pub mod docs;
pub mod fleet;
pub mod images;
pub mod node_args;
pub mod operate;
pub mod selftest;
