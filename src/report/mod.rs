//! Rendering, and nothing else: the text tables and the SVG/PNG pictures of
//! each command ([`demo`], [`forward`], [`sweep`], [`bench`](mod@bench)), drawn with
//! [`plot`].

pub mod bench;
pub mod demo;
pub mod forward;
pub(crate) mod init;
pub(crate) mod inspect;
pub(crate) mod model;
pub mod plot;
pub(crate) mod style;
pub mod sweep;
pub mod transformer;
