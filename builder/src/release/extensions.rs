//! What the extension loader and the imager of each release enforce or expect (see the module
//! docs of `crate::release`).
