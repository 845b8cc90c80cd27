//! How typed values become bytes: the [`Codec`] trait and its default, [`JsonCodec`].

use bytes::Bytes;
use deploy_core::error::BoxError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Turns values into bytes and back, for [`TypedCache`](crate::TypedCache).
///
/// Implement it to store another format (MessagePack, bincode, a compressed JSON).
/// Both directions must agree: `decode(encode(v)) == v` for every value the cache
/// stores. Errors are boxed; the typed cache reports them as
/// [`CacheError::Codec`](deploy_core::cache::CacheError::Codec) with the key.
pub trait Codec: Send + Sync + 'static {
    /// The bytes of `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, BoxError>;

    /// The value in `bytes`; fails when they do not hold a `T` in this format.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError>;
}

/// JSON through `serde_json`: readable with `redis-cli`, and the default codec.
///
/// ```
/// use deploy_cache::{Codec, JsonCodec};
///
/// let bytes = JsonCodec.encode(&vec![1, 2, 3]).unwrap();
/// assert_eq!(&bytes[..], b"[1,2,3]");
/// let back: Vec<i32> = JsonCodec.decode(&bytes).unwrap();
/// assert_eq!(back, [1, 2, 3]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, BoxError> {
        Ok(Bytes::from(serde_json::to_vec(value)?))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_decode_rejects_bytes_of_another_shape() {
        let bytes = JsonCodec.encode(&"text").unwrap();
        assert!(JsonCodec.decode::<u32>(&bytes).is_err());
        assert!(JsonCodec.decode::<u32>(b"\xff\x00").is_err());
    }
}
