use super::*;
use proptest::prelude::*;

#[test]
fn short_and_padded_ids_name_the_same_trace() {
    let a = TraceId::parse_hex("abc").unwrap();
    let b = TraceId::parse_hex("0000000000000abc").unwrap();
    let c = TraceId::parse_hex("00000000000000000000000000000ABC").unwrap();
    assert_eq!(a, b);
    assert_eq!(b, c);
    assert_eq!(a.to_string(), "0000000000000abc");
}

#[test]
fn renders_32_digits_when_high_bits_set() {
    let id = TraceId::parse_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[test]
fn rejects_bad_ids() {
    assert!(matches!(TraceId::parse_hex(""), Err(Error::EmptyId)));
    assert!(matches!(TraceId::parse_hex(&"a".repeat(33)), Err(Error::IdTooLong(_))));
    assert!(matches!(TraceId::parse_hex("xyz"), Err(Error::IdNotHex(_))));
    assert!(TraceId::from_slice(&[1; 15]).is_err());
    assert!(SpanId::from_slice(&[1; 9]).is_err());
}

proptest! {
    #[test]
    fn trace_id_hex_round_trips(bytes in proptest::array::uniform16(any::<u8>())) {
        let id = TraceId(bytes);
        prop_assert_eq!(TraceId::parse_hex(&id.to_string()).unwrap(), id);
        prop_assert_eq!(TraceId::parse_hex(&id.to_hex32()).unwrap(), id);
    }

    #[test]
    fn span_id_hex_round_trips(bytes in proptest::array::uniform8(any::<u8>())) {
        let id = SpanId(bytes);
        prop_assert_eq!(SpanId::parse_hex(&id.to_string()).unwrap(), id);
    }
}
