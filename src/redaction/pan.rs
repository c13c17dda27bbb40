//! Finding primary account numbers (PANs) in text and masking them.
//!
//! A PAN is 13–19 digits, written in one run or in groups joined by single
//! spaces or dashes (`4111 1111 1111 1111`, `3782-822463-10005`), that passes
//! the Luhn check and is not glued to further digits: the digit before its
//! first group and the digit after its last group, if any, are separated from
//! it. Inside a longer string each PAN is replaced in place by `****` and its
//! last four digits (`pay 4111-1111-1111-1111 now` → `pay ****1111 now`).
//!
//! Two kinds of number are never PANs, whatever their digits: an
//! international phone number (a run right after `+`), and an IBAN (two
//! capital letters, two check digits, then letters and digits, grouped or not,
//! whose ISO 13616 mod-97 check holds), so `DE89 3704 0044 0532 0130 00`
//! stays intact even where a span of its groups happens to pass Luhn.
//!
//! With [`PanScope::PaymentNetworks`] (the default) a PAN must also start with
//! 2–6, the major-industry digits of the card networks (Mastercard 2 and 5;
//! American Express, JCB and Diners 3; Visa 4; Discover, UnionPay and Maestro
//! 6). That spares epoch timestamps in milliseconds, microseconds and
//! nanoseconds (13, 16 and 19 digits starting with 1 until 2033) the one in
//! ten that happen to pass Luhn. [`PanScope::AnyLuhn`] masks every Luhn-valid
//! run.
//!
//! # Cost
//! Most strings have fewer than 13 digits and cost one counting pass (which
//! the compiler vectorises); only the rest are scanned for groups.

/// Fewest digits of a PAN.
pub const MIN_DIGITS: usize = 13;
/// Most digits of a PAN.
pub const MAX_DIGITS: usize = 19;

/// Which Luhn-valid digit runs count as card numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanScope {
    /// First digit 2–6 (the card networks' major-industry identifiers).
    #[default]
    PaymentNetworks,
    /// Any first digit.
    AnyLuhn,
}

/// One PAN found in a string: its byte range (separators included) and last four digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pan {
    pub start: usize,
    pub end: usize,
    pub last4: [u8; 4],
}

/// Whether `text` has enough digits to hold a PAN at all (the cheap first test).
#[inline]
pub fn may_contain(text: &[u8]) -> bool {
    text.len() >= MIN_DIGITS && count_digits(text) >= MIN_DIGITS
}

#[inline]
fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| b.is_ascii_digit()).count()
}

/// Bytes per block of [`may_hold_pan`].
const BLOCK: usize = 32;

/// Whether an encoded message (any bytes) may hold a PAN in one of its
/// strings: false only when no run of digits, spaces and dashes in it has 13
/// digits, which every PAN's text has. Sound for every string inside
/// `bytes` whatever their framing, since a string's text is a contiguous
/// part of them; binary fields only ever make it answer true.
///
/// Digits are counted per 32-byte block (vectorised); the first 13 digits of
/// a PAN take at most 25 bytes, so they lie within two neighbouring blocks,
/// and only a pair of blocks with 13 digits between them is scanned for runs.
pub fn may_hold_pan(bytes: &[u8]) -> bool {
    let mut previous = 0;
    let mut blocks = bytes.chunks(BLOCK).enumerate();
    for (i, block) in &mut blocks {
        let digits = match <&[u8; BLOCK]>::try_from(block) {
            Ok(full) => full.iter().filter(|b| b.wrapping_sub(b'0') < 10).count(),
            Err(_) => count_digits(block),
        };
        if previous + digits >= MIN_DIGITS {
            let start = i.saturating_sub(1) * BLOCK;
            let end = (start + 2 * BLOCK).min(bytes.len());
            if has_digit_run(&bytes[start..end]) {
                return true;
            }
        }
        previous = digits;
    }
    false
}

/// Whether `bytes` has a run of digits, spaces and dashes holding 13 digits.
fn has_digit_run(bytes: &[u8]) -> bool {
    let mut digits = 0;
    for &b in bytes {
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= MIN_DIGITS {
                return true;
            }
        } else if b != b' ' && b != b'-' {
            digits = 0;
        }
    }
    false
}

/// Every PAN in `text`, left to right, not overlapping.
pub fn find(text: &[u8], scope: PanScope) -> Vec<Pan> {
    let mut found = Vec::new();
    if !may_contain(text) {
        return found;
    }
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() {
            if let Some(end) = iban_at(text, i) {
                i = end;
            } else {
                i += 1;
            }
            continue;
        }
        let after_plus = i > 0 && text[i - 1] == b'+';
        // A maximal run of digit groups joined by single separators.
        groups.clear();
        loop {
            let start = i;
            while i < text.len() && text[i].is_ascii_digit() {
                i += 1;
            }
            groups.push((start, i));
            let joined = i + 1 < text.len()
                && matches!(text[i], b' ' | b'-')
                && text[i + 1].is_ascii_digit();
            if !joined {
                break;
            }
            i += 1;
        }
        if !after_plus {
            pans_in_run(text, &groups, scope, &mut found);
        }
    }
    found
}

/// IBAN lengths by country (ISO 13616 registry). A country not listed is
/// not recognised, and its IBANs are scanned like any other text.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// The end of the IBAN that starts at `at`, if one does: a country with a
/// registered length, two check digits, then letters and digits, exactly
/// that many in all, written in one piece or in groups of four joined by
/// single spaces, not glued to a further letter or digit, whose mod-97 check
/// holds. Exact lengths and groups keep a card number written after an IBAN
/// from being taken into it.
fn iban_at(text: &[u8], at: usize) -> Option<usize> {
    let head = text.get(at..at + 4)?;
    if !(head[2].is_ascii_digit() && head[3].is_ascii_digit())
        || (at > 0 && text[at - 1].is_ascii_alphanumeric())
    {
        return None;
    }
    let len = IBAN_LENGTHS
        .iter()
        .find(|(country, _)| country[..] == head[..2])?
        .1;
    let mut iban = [0u8; 34];
    let mut chars = 0;
    let mut printed = None;
    let mut i = at;
    while chars < len {
        let c = *text.get(i)?;
        let group_start = chars > 0 && chars % 4 == 0;
        if c == b' ' && group_start && printed != Some(false) {
            printed = Some(true);
            i += 1;
            continue;
        }
        if !c.is_ascii_alphanumeric()
            || (group_start && printed == Some(true) && text[i - 1] != b' ')
        {
            return None;
        }
        if group_start && printed.is_none() {
            printed = Some(false);
        }
        iban[chars] = c.to_ascii_uppercase();
        chars += 1;
        i += 1;
    }
    if text.get(i).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    iban_checks(&iban[..len]).then_some(i)
}

/// ISO 13616: move the first four characters to the end, letters become
/// 10–35, and the number must be 1 modulo 97.
fn iban_checks(iban: &[u8]) -> bool {
    let mut rest = 0u32;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        let value = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rest = if value >= 10 {
            (rest * 100 + value) % 97
        } else {
            (rest * 10 + value) % 97
        };
    }
    rest == 1
}

/// The PANs among consecutive groups of one run: from each group, the longest
/// span of whole groups that holds 13–19 digits and passes the checks.
fn pans_in_run(text: &[u8], groups: &[(usize, usize)], scope: PanScope, found: &mut Vec<Pan>) {
    let mut first = 0;
    while first < groups.len() {
        let mut best = None;
        let mut digits = 0;
        for (last, &(start, end)) in groups.iter().enumerate().skip(first) {
            digits += end - start;
            if digits > MAX_DIGITS {
                break;
            }
            if digits >= MIN_DIGITS && is_pan(text, &groups[first..=last], digits, scope) {
                best = Some(last);
            }
        }
        match best {
            Some(last) => {
                let end = groups[last].1;
                found.push(Pan {
                    start: groups[first].0,
                    end,
                    last4: last_four(text, &groups[first..=last]),
                });
                first = last + 1;
            }
            None => first += 1,
        }
    }
}

fn is_pan(text: &[u8], groups: &[(usize, usize)], digits: usize, scope: PanScope) -> bool {
    debug_assert!((MIN_DIGITS..=MAX_DIGITS).contains(&digits));
    let first_digit = text[groups[0].0];
    if scope == PanScope::PaymentNetworks && !(b'2'..=b'6').contains(&first_digit) {
        return false;
    }
    luhn(groups.iter().flat_map(|&(s, e)| text[s..e].iter().copied()))
}

/// The Luhn (mod 10) check over ASCII digits.
pub fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

fn last_four(text: &[u8], groups: &[(usize, usize)]) -> [u8; 4] {
    let mut last4 = [b'0'; 4];
    let mut digits = groups
        .iter()
        .rev()
        .flat_map(|&(s, e)| text[s..e].iter().rev().copied());
    for slot in last4.iter_mut().rev() {
        if let Some(d) = digits.next() {
            *slot = d;
        }
    }
    last4
}

/// `text` with every PAN replaced by `****` and its last four digits, or
/// `None` when it holds none. `text` must be UTF-8; the result is (only ASCII
/// digits and separators are replaced).
pub fn mask(text: &[u8], scope: PanScope) -> Option<(Vec<u8>, usize)> {
    let pans = find(text, scope);
    if pans.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(text.len());
    let mut copied = 0;
    for pan in &pans {
        out.extend_from_slice(&text[copied..pan.start]);
        out.extend_from_slice(b"****");
        out.extend_from_slice(&pan.last4);
        copied = pan.end;
    }
    out.extend_from_slice(&text[copied..]);
    Some((out, pans.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(s: &str) -> String {
        match mask(s.as_bytes(), PanScope::PaymentNetworks) {
            Some((out, _)) => String::from_utf8(out).expect("ascii replacement"),
            None => s.to_string(),
        }
    }

    #[test]
    fn masks_plain_and_grouped_card_numbers_in_place() {
        assert_eq!(masked("4111111111111111"), "****1111");
        assert_eq!(masked("card 4111 1111 1111 1111 ok"), "card ****1111 ok");
        assert_eq!(masked("x=4111-1111-1111-1111;"), "x=****1111;");
        // American Express, 15 digits grouped 4-6-5.
        assert_eq!(masked("amex 3782-822463-10005"), "amex ****0005");
        // Two in one string, glued to letters and punctuation.
        assert_eq!(
            masked("a4111111111111111b,5500000000000004."),
            "a****1111b,****0004."
        );
        // JSON with the number as a string value.
        assert_eq!(
            masked(r#"{"card":"4111111111111111","cvv":"123"}"#),
            r#"{"card":"****1111","cvv":"123"}"#
        );
    }

    #[test]
    fn every_length_from_13_to_19() {
        for len in MIN_DIGITS..=MAX_DIGITS {
            let pan = with_check_digit(&format!("4{}", "2".repeat(len - 2)));
            assert_eq!(pan.len(), len);
            assert_eq!(masked(&pan), format!("****{}", &pan[len - 4..]), "{pan}");
        }
    }

    #[test]
    fn leaves_numbers_that_are_not_card_numbers() {
        for keep in [
            "4111111111111112",     // fails Luhn
            "411111111111",         // 12 digits
            "41111111111111110",    // glued: 17 digits that fail Luhn
            "14111111111111111",    // glued on the left
            "41111111111111111111", // 20 digits
            "2026-12-03T10:15:30.123456789Z",
            "+1 555-123-4567",
            "GB82 WEST 1234 5698 7654 32",
            "order 1234-5678",
            "",
        ] {
            assert_eq!(masked(keep), keep);
        }
    }

    #[test]
    fn scope_decides_about_runs_that_start_with_other_digits() {
        // A Luhn-valid 13-digit epoch in milliseconds.
        let epoch = with_check_digit("173321280000");
        assert_eq!(masked(&epoch), epoch);
        let any = mask(epoch.as_bytes(), PanScope::AnyLuhn).expect("luhn-valid");
        assert_eq!(any.0, format!("****{}", &epoch[9..]).into_bytes());
    }

    #[test]
    fn a_card_number_next_to_other_numbers_is_still_found() {
        // The order id is a group of the same run; the PAN is the longest valid span.
        assert_eq!(masked("12345 4111111111111111"), "12345 ****1111");
        assert_eq!(masked("4111111111111111 2029"), "****1111 2029");
    }

    #[test]
    fn ibans_and_international_phone_numbers_are_not_card_numbers() {
        // Luhn-valid spans of groups inside a valid IBAN (3704 0044 0532 0130 00 …).
        for iban in [
            "DE89 3704 0044 0532 0130 00",
            "DE89370400440532013000",
            "pay to GB82 WEST 1234 5698 7654 32 today",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91 ABNA 0417 1643 00",
        ] {
            assert_eq!(mask(iban.as_bytes(), PanScope::AnyLuhn), None, "{iban}");
        }
        assert!(iban_checks(b"DE89370400440532013000"));
        assert!(!iban_checks(b"DE88370400440532013000"));
        // An invalid IBAN is just text: a card number after it is still found.
        assert_eq!(masked("DE00 4111 1111 1111 1111"), "DE00 ****1111");
        // A Luhn-valid 13-digit run after a plus sign is a phone number.
        let phone = format!("+{}", with_check_digit("551191234567"));
        assert_eq!(masked(&phone), phone);
    }

    #[test]
    fn may_hold_pan_never_misses_one() {
        // Every PAN, at every offset in a buffer of binary noise, is seen.
        let pan = "4111 1111-1111 1111";
        for offset in 0..80 {
            let mut buf: Vec<u8> = (0..160u32).map(|i| (i * 37 % 251) as u8 | 0x80).collect();
            buf[offset..offset + pan.len()].copy_from_slice(pan.as_bytes());
            assert!(may_hold_pan(&buf), "offset {offset}");
        }
        assert!(!may_hold_pan(&[0x80; 500]));
        assert!(!may_hold_pan(
            b"order 1234-5678 on 2026-12-03 10:15:30 x 123456789012"
        ));
        assert!(may_hold_pan(b"order 1234567890123"));
    }

    #[test]
    fn luhn_matches_known_values() {
        assert!(luhn(b"79927398713".iter().copied()));
        assert!(!luhn(b"79927398710".iter().copied()));
        assert!(luhn(b"0".iter().copied()));
    }

    /// `prefix` with the Luhn check digit appended.
    fn with_check_digit(prefix: &str) -> String {
        (b'0'..=b'9')
            .map(|d| format!("{prefix}{}", d as char))
            .find(|s| luhn(s.bytes()))
            .expect("one check digit fits")
    }
}
