//! Load a plain (uncompressed) filesystem tarball into a tree.
