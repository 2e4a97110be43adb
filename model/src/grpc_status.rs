//! gRPC status codes by their canonical names (`OK`, `UNAVAILABLE`, ...): the names
//! gRPC's status code list gives them, and those Istio's fault `grpcStatus` takes.
//! Metric labels and reports use them, so that an alert on `code!="OK"` means what it
//! says.

/// Every gRPC status code, 0 to 16, by its canonical name; each at the index of its
/// code.
pub const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The canonical name of `code` (`UNAVAILABLE` for 14); `None` for a code past 16.
pub fn name(code: i32) -> Option<&'static str> {
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
}

/// The code of a canonical name (upper case, as in [`NAMES`]).
pub fn code(name: &str) -> Option<u32> {
    NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u32::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_agree() {
        assert_eq!(name(0), Some("OK"));
        assert_eq!(name(4), Some("DEADLINE_EXCEEDED"));
        assert_eq!(name(8), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(name(14), Some("UNAVAILABLE"));
        assert_eq!(name(16), Some("UNAUTHENTICATED"));
        assert_eq!(name(17), None);
        assert_eq!(name(-1), None);
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(code(n), Some(i as u32), "{n}");
        }
        assert_eq!(code("Unavailable"), None, "names are upper case");
    }
}
