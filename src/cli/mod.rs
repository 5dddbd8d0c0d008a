/*!
The command line: the flags ([`args`]) and running them ([`app`]).
*/

pub mod app;
pub mod args;
pub mod bulk;
pub mod node_args;
pub mod operate;
