//! Sources: filesystem trees read from a directory, a plain tarball, or a (flattened) image.
//! Each loader returns a [`crate::rootfs::Tree`].

pub mod dir;
pub mod image;
pub mod tarball;
