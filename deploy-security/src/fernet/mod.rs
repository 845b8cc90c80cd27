//! Fernet symmetric encryption on the RustCrypto primitives (AES-128-CBC, HMAC-SHA256):
//! single keys, key rings with rotation, and errors that tell every kind of bad token
//! apart.
//!
//! Tokens interoperate with every Fernet implementation (Python's `cryptography`, Ruby,
//! Go): they pass the specification's test vectors and are byte for byte those of the
//! `fernet` crate, which the tests use as the reference.

mod codec;
mod error;
mod key;
mod ring;
mod token;

pub use error::FernetError;
pub use key::{DecryptOptions, Decrypted, FernetKey};
pub use ring::KeyRing;
pub use token::TokenHeader;
