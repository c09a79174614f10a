//! Load a directory on disk into a tree.
