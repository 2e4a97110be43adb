//! "Did you mean …?" for a misspelt field name, shared by the traffic rules' and the
//! quota policies' readers.

/// The name among `names` that `key` most likely misspells: the same letters ignoring
/// case and `_`/`-` (`per_try_timeout` → `perTryTimeout`), or else the nearest within
/// two edits (the first of equals).
pub(crate) fn closest<'n>(key: &str, names: impl IntoIterator<Item = &'n str>) -> Option<&'n str> {
    let squash = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let key = squash(key);
    let mut best: Option<(usize, &str)> = None;
    for name in names {
        let distance = edit_distance(&key, &squash(name));
        if distance <= 2 && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, name));
        }
    }
    best.map(|(_, name)| name)
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{closest, edit_distance};

    #[test]
    fn suggestions() {
        let names = ["subset", "host", "perTryTimeout"];
        assert_eq!(closest("subsett", names), Some("subset"));
        assert_eq!(closest("per_try_timeout", names), Some("perTryTimeout"));
        assert_eq!(closest("Host", names), Some("host"));
        assert_eq!(closest("labels", names), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
