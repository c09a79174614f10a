//! The machine-configuration documents of each release and the v1alpha1 fields each replaces or
//! conflicts with (see the module docs of `crate::release`).
