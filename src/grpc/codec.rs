//! The protobuf codec of every roster service: prost's, except that a request that does not
//! decode (malformed bytes, nesting past prost's recursion limit) is the caller's fault and is
//! answered INVALID_ARGUMENT with a field violation, not INTERNAL.
use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};
use tonic_types::{BadRequest, StatusExt};

pub struct RosterCodec<T, U> {
    inner: ProstCodec<T, U>,
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for RosterCodec<T, U> {
    fn default() -> Self {
        RosterCodec {
            inner: ProstCodec::default(),
            _pd: PhantomData,
        }
    }
}

impl<T, U> Codec for RosterCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RosterDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RosterDecoder(self.inner.decoder())
    }
}

pub struct RosterDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for RosterDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0
            .decode(buf)
            .map_err(|status| malformed(status.message()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// prost reports `failed to decode Protobuf message: A.b: C.d: ...: Request.field: why`; the
/// outermost `Message.field` is the request field to name, the last part is why. Without one
/// (`failed to decode Protobuf message: buffer underflow`) the violation names `request`.
fn malformed(message: &str) -> Status {
    let detail = message.trim_start_matches("failed to decode Protobuf message: ");
    let mut parts = detail.rsplit(": ");
    let why = parts.next().unwrap_or("malformed").to_owned();
    let field = parts
        .next()
        .and_then(|outer| outer.split_once('.'))
        .map(|(_, field)| field.to_owned())
        // Bytes that are not a message at all (no field to blame): the request as a whole.
        .unwrap_or_else(|| "request".to_owned());
    let description = format!("request does not decode: {why}");
    Status::with_error_details_vec(
        tonic::Code::InvalidArgument,
        format!("invalid argument: {field}: {description}"),
        [BadRequest::with_violation(field, description).into()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn names_the_outermost_field() {
        let status = malformed(
            "failed to decode Protobuf message: Value.kind: Struct.fields: QueryUsersRequest.filter: recursion limit reached",
        );
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("field violations");
        assert_eq!(bad.field_violations[0].field, "filter");
        assert!(
            bad.field_violations[0]
                .description
                .contains("recursion limit reached")
        );
        let status = malformed("failed to decode Protobuf message: buffer underflow");
        let bad = status.get_details_bad_request().expect("field violations");
        assert_eq!(bad.field_violations[0].field, "request");
    }
}
