//! Choosing a content coding from the request's `Accept-Encoding` (RFC 9110 section 12.5.3).
//!
//! Each listed coding may carry a weight (`;q=0.5`, 0 to 1 with at most three decimals); a
//! coding listed without one has weight 1, `q=0` means "not acceptable", and `*` stands for
//! every coding not listed by name. Codings are case-insensitive and `x-gzip` is `gzip`
//! (RFC 9110 section 8.4.1.3). An entry whose weight is malformed is ignored, as is a coding
//! listed a second time (its first listing counts). Among the encodings a route has on, the
//! one with the highest weight wins; equal weights go to the server's preference, zstd, then
//! br, then gzip. No acceptable encoding (or no `Accept-Encoding` at all) means no
//! compression.

use crate::config::model::Compression;
use http::header::{HeaderMap, ACCEPT_ENCODING};

/// A content coding fulcrum can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Zstandard (`zstd`, RFC 8878).
    Zstd,
    /// Brotli (`br`, RFC 7932).
    Brotli,
    /// gzip (`gzip`, RFC 1952).
    Gzip,
}

impl Encoding {
    /// Every encoding, in the server's order of preference.
    pub const PREFERENCE: [Encoding; 3] = [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip];

    /// The coding's name in `Content-Encoding` (and the metrics' `encoding` label).
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// The level `settings` gives this encoding; `0` when it is off.
    pub fn level(self, settings: &Compression) -> u32 {
        match self {
            Encoding::Zstd => settings.zstd,
            Encoding::Brotli => settings.brotli,
            Encoding::Gzip => settings.gzip,
        }
    }

    /// Position in [`Encoding::PREFERENCE`].
    pub fn index(self) -> usize {
        match self {
            Encoding::Zstd => 0,
            Encoding::Brotli => 1,
            Encoding::Gzip => 2,
        }
    }

    /// Whether an `Accept-Encoding` coding name (lowercase) names this encoding.
    fn named(self, coding: &str) -> bool {
        match self {
            Encoding::Gzip => coding == "gzip" || coding == "x-gzip",
            other => coding == other.token(),
        }
    }
}

/// One usable `Accept-Encoding` entry: a lowercase coding name and its weight in thousandths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preference {
    /// The coding, lowercase (`*` for any).
    pub coding: String,
    /// The weight, 0 to 1000.
    pub weight: u16,
}

/// The usable entries of every `Accept-Encoding` field of `headers`, in order, each coding
/// once (its first listing).
pub fn preferences(headers: &HeaderMap) -> Vec<Preference> {
    let mut out: Vec<Preference> = Vec::new();
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for entry in value.split(',') {
            let Some(p) = parse_entry(entry) else {
                continue;
            };
            if !out.iter().any(|o| o.coding == p.coding) {
                out.push(p);
            }
        }
    }
    out
}

/// One list entry (`gzip;q=0.5`); `None` when it is empty or its weight is malformed.
fn parse_entry(entry: &str) -> Option<Preference> {
    let mut parts = entry.split(';');
    let coding = parts.next()?.trim().to_ascii_lowercase();
    if coding.is_empty() {
        return None;
    }
    let mut weight = 1000;
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            // A parameter without a value: not a weight, ignored.
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            weight = parse_weight(value.trim())?;
        }
    }
    Some(Preference { coding, weight })
}

/// A `qvalue` (`0`, `0.5`, `1.000`, ...) in thousandths; `None` when malformed.
pub fn parse_weight(text: &str) -> Option<u16> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// The weight the client gives `encoding`: its own entry's, else `*`'s, else 0.
fn weight_of(prefs: &[Preference], encoding: Encoding) -> u16 {
    prefs
        .iter()
        .find(|p| encoding.named(&p.coding))
        .or_else(|| prefs.iter().find(|p| p.coding == "*"))
        .map_or(0, |p| p.weight)
}

/// The encoding to answer with: among those `settings` has on, the one the client weighs
/// highest (ties to the server's preference); `None` when the client accepts none of them.
pub fn choose(headers: &HeaderMap, settings: &Compression) -> Option<Encoding> {
    let prefs = preferences(headers);
    if prefs.is_empty() {
        return None;
    }
    let mut best: Option<(Encoding, u16)> = None;
    for encoding in Encoding::PREFERENCE {
        if encoding.level(settings) == 0 {
            continue;
        }
        let weight = weight_of(&prefs, encoding);
        if weight > 0 && best.is_none_or(|(_, w)| weight > w) {
            best = Some((encoding, weight));
        }
    }
    best.map(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_on() -> Compression {
        Compression {
            gzip: 6,
            brotli: 4,
            zstd: 3,
            min_size: 0,
            types: Vec::new(),
        }
    }

    fn pick_with(settings: &Compression, values: &[&str]) -> Option<Encoding> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT_ENCODING, v.parse().unwrap());
        }
        choose(&h, settings)
    }

    fn pick(value: &str) -> Option<Encoding> {
        pick_with(&all_on(), &[value])
    }

    #[test]
    fn weights_parse_by_the_grammar() {
        assert_eq!(parse_weight("0"), Some(0));
        assert_eq!(parse_weight("0."), Some(0));
        assert_eq!(parse_weight("0.5"), Some(500));
        assert_eq!(parse_weight("0.125"), Some(125));
        assert_eq!(parse_weight("1"), Some(1000));
        assert_eq!(parse_weight("1.000"), Some(1000));
        for bad in ["1.5", "2", "0.1234", "-0", "", "abc", "0.x", ".5", "1.001"] {
            assert_eq!(parse_weight(bad), None, "{bad}");
        }
    }

    #[test]
    fn no_header_or_an_empty_one_means_no_compression() {
        assert_eq!(pick_with(&all_on(), &[]), None);
        assert_eq!(pick(""), None);
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("identity;q=0"), None);
        assert_eq!(pick("deflate, compress"), None);
    }

    #[test]
    fn equal_weights_follow_the_server_preference() {
        assert_eq!(pick("gzip, br, zstd"), Some(Encoding::Zstd));
        assert_eq!(pick("gzip, deflate, br"), Some(Encoding::Brotli));
        assert_eq!(pick("gzip"), Some(Encoding::Gzip));
        assert_eq!(pick("*"), Some(Encoding::Zstd));
    }

    #[test]
    fn the_highest_weight_wins() {
        assert_eq!(pick("gzip;q=1, br;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(pick("zstd;q=0.1, gzip;q=0.2"), Some(Encoding::Gzip));
        assert_eq!(pick("GZIP ; Q=0.9 , Br;q=0.8"), Some(Encoding::Gzip));
        assert_eq!(pick("x-gzip"), Some(Encoding::Gzip));
    }

    #[test]
    fn zero_excludes_and_star_covers_the_rest() {
        assert_eq!(pick("br;q=0, gzip"), Some(Encoding::Gzip));
        assert_eq!(pick("br;q=0"), None);
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("zstd;q=0, *"), Some(Encoding::Brotli));
        assert_eq!(pick("gzip, *;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(pick("*;q=0.5, br;q=0.4"), Some(Encoding::Zstd));
        assert_eq!(pick("gzip;q=0, *;q=0.1, zstd;q=0, br;q=0"), None);
    }

    #[test]
    fn malformed_entries_are_ignored_and_the_first_listing_counts() {
        assert_eq!(pick("br;q=2, gzip;q=0.1"), Some(Encoding::Gzip));
        assert_eq!(pick("br;q=high"), None);
        assert_eq!(pick(",, ;q=1, gzip"), Some(Encoding::Gzip));
        assert_eq!(pick("gzip;q=0, gzip"), None);
        assert_eq!(pick("gzip;level=3"), Some(Encoding::Gzip));
    }

    #[test]
    fn only_encodings_that_are_on_are_chosen_and_fields_combine() {
        let gzip_only = Compression {
            brotli: 0,
            zstd: 0,
            ..all_on()
        };
        assert_eq!(pick_with(&gzip_only, &["br, zstd"]), None);
        assert_eq!(
            pick_with(&gzip_only, &["br", "gzip;q=0.1"]),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            pick_with(&all_on(), &["gzip", "br"]),
            Some(Encoding::Brotli)
        );
    }
}
