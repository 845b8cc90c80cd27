//! Fernet symmetric encryption on the `fernet` crate (RustCrypto backend): single keys,
//! key rings with rotation, and errors that tell every kind of bad token apart.
//!
//! Tokens interoperate with every Fernet implementation (Python's `cryptography`, Ruby,
//! Go): the crate passes the specification's test vectors.

mod error;
mod key;
mod ring;
mod token;

pub use error::FernetError;
pub use key::{DecryptOptions, Decrypted, FernetKey};
pub use ring::KeyRing;
pub use token::TokenHeader;
