//! 居民身份证号码 (GB 11643): the 18-character resident identity number and its checks.
//!
//! Positions 1–6 are the address code of the place of first registration, 7–14 the birth date
//! (`YYYYMMDD`), 15–17 a sequence number whose last digit is odd for men and even for women, and 18
//! the ISO 7064 MOD 11-2 check character.

use crate::time;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [u8; 11] = *b"10X98765432";

/// The check character (ISO 7064 MOD 11-2) of the first 17 digits.
pub fn check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| (d - b'0') as u32 * w)
        .sum();
    Some(CHECK[(sum % 11) as usize])
}

/// The first check an identity number fails, in the order of `rules.md` R07.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdCheck {
    /// Not 18 characters.
    Length,
    /// The first 17 characters are not all digits.
    Digits,
    /// The check character is wrong.
    Checksum,
    /// Characters 7–14 are not a real date equal to the birth date.
    BirthDate,
    /// The 17th digit's parity does not match the sex (odd = M).
    Sex,
}

impl IdCheck {
    /// The name used in evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            IdCheck::Length => "length",
            IdCheck::Digits => "digits",
            IdCheck::Checksum => "checksum",
            IdCheck::BirthDate => "birth_date",
            IdCheck::Sex => "sex",
        }
    }
}

/// Checks a resident identity number against the record's birth date and sex (`male`).
/// Returns the first failed check, or `None` when the number can be right.
pub fn validate(id: &str, birth_date: i32, male: bool) -> Option<IdCheck> {
    Facts::of(id).check(birth_date, male)
}

/// What an identity number says by itself, packed in 32 bits: whether it passes the length,
/// digits and checksum checks, and if so the birth date it holds and its sex digit's parity.
/// Worked out once per distinct number ([`crate::store::Store::identity_facts`]), so that R07
/// compares each record's birth date and sex without reading the number again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts(u32);

/// Low two bits: 0 = passes length, digits and checksum; else the [`IdCheck`] it fails.
const TAG_OK: u32 = 0;
/// Added to a date (days since 1970-01-01, years 0000–9999) so that it packs unsigned and above
/// zero; 0 stands for "not a real date".
const DATE_BIAS: i64 = 1_000_000;

impl Facts {
    /// The facts of one number.
    pub fn of(id: &str) -> Facts {
        // Length is counted in characters: 18 characters with a full-width digit among them have
        // the right length and fail the digits check.
        if !(id.len() == 18 && id.is_ascii()) && id.chars().count() != 18 {
            return Facts(1);
        }
        let b = id.as_bytes();
        if b.len() < 17 || !b[..17].iter().all(u8::is_ascii_digit) {
            return Facts(2);
        }
        let expected = check_char(&b[..17]).unwrap_or(0);
        if b.len() != 18 || b[17].to_ascii_uppercase() != expected {
            return Facts(3);
        }
        let n = |r: std::ops::Range<usize>| {
            b[r].iter()
                .fold(0u32, |acc, c| acc * 10 + (c - b'0') as u32)
        };
        let date = time::ymd(n(6..10) as i32, n(10..12), n(12..14))
            .map_or(0, |d| (d as i64 + DATE_BIAS) as u32);
        let odd = ((b[16] - b'0') % 2) as u32;
        Facts((date << 3) | (odd << 2) | TAG_OK)
    }

    /// The facts packed in a number, as a snapshot keeps them.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Facts from their packed number ([`Facts::bits`]).
    pub fn from_bits(bits: u32) -> Facts {
        Facts(bits)
    }

    /// The first check a record with this number, `birth_date` and sex (`male`) fails.
    pub fn check(self, birth_date: i32, male: bool) -> Option<IdCheck> {
        match self.0 & 3 {
            1 => return Some(IdCheck::Length),
            2 => return Some(IdCheck::Digits),
            3 => return Some(IdCheck::Checksum),
            _ => {}
        }
        let date = self.0 >> 3;
        if date == 0 || date as i64 - DATE_BIAS != birth_date as i64 {
            return Some(IdCheck::BirthDate);
        }
        if ((self.0 >> 2) & 1 == 1) != male {
            return Some(IdCheck::Sex);
        }
        None
    }
}

/// Builds a valid number from an address code, a birth date and a sequence (0–999) whose parity
/// must already match the sex.
pub fn build(area: &str, birth_date: i32, seq: u32) -> String {
    let d = time::naive(birth_date);
    let mut s = format!("{area}{}{seq:03}", d.format("%Y%m%d"));
    let c = check_char(s.as_bytes()).unwrap_or(b'0');
    s.push(c as char);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standards_worked_example() {
        // The example of GB 11643-1999, appendix: 11010519491231002X.
        let birth = time::ymd(1949, 12, 31).unwrap();
        assert_eq!(validate("11010519491231002X", birth, false), None);
        assert_eq!(validate("11010519491231002x", birth, false), None);
        assert_eq!(
            validate("110105194912310021", birth, false),
            Some(IdCheck::Checksum)
        );
        assert_eq!(
            validate("11010519491231002X", birth, true),
            Some(IdCheck::Sex)
        );
        assert_eq!(
            validate("11010519491231002X", birth + 1, false),
            Some(IdCheck::BirthDate)
        );
        assert_eq!(
            validate("1101051949123100", birth, false),
            Some(IdCheck::Length)
        );
        assert_eq!(
            validate("11010519491231002XX", birth, false),
            Some(IdCheck::Length)
        );
        assert_eq!(
            validate("1101051949123100AX", birth, false),
            Some(IdCheck::Digits)
        );
        assert_eq!(
            validate("１１010519491231002", birth, false),
            Some(IdCheck::Length)
        );
    }

    #[test]
    fn built_numbers_validate() {
        let birth = time::ymd(1990, 2, 28).unwrap();
        let id = build("440106", birth, 123);
        assert_eq!(id.len(), 18);
        assert_eq!(validate(&id, birth, true), None);
        assert_eq!(validate(&id, birth, false), Some(IdCheck::Sex));
        // An impossible date in positions 7–14 fails the birth-date check.
        let mut bad = b"44010619900230123".to_vec();
        let c = check_char(&bad).unwrap();
        bad.push(c);
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(validate(&bad, birth, true), Some(IdCheck::BirthDate));
    }
}
