//! Shared helpers of the deploy-rs examples; the programs themselves are the
//! `examples/*.rs` files of this package.
