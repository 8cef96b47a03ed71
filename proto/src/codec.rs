//! The Protobuf codec of every generated service: tonic's prost codec with a small first buffer.
//!
//! tonic gives each call an encode buffer of 8 KiB up front. A chat stream holds its buffer for as
//! long as it is open, while its events (a started event, one word, a usage count) are tens of
//! bytes; with thousands of open streams those buffers are most of the gateway's memory per
//! stream. A 256-byte start holds a started event or a few words of the answer; the buffer grows
//! when a message is bigger (a long completed answer), as tonic's does. A chat's deltas cost one
//! small allocation every few hundred bytes of text instead of one per 8 KiB.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::ProstCodec;

/// First size of a call's encode and decode buffers.
pub const BUFFER_SIZE: usize = 256;
/// Encoded bytes after which a stream yields to the transport (tonic's default).
pub const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_SIZE`] buffers.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
