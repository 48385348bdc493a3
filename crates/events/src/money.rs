use std::{fmt, str::FromStr};

/// A non-negative decimal amount, exact to 1/10,000 of the currency unit.
///
/// Kept as an integer so that authority limits compare exactly; the wire form is the
/// decimal string of the contract (`"1250.50"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money {
    ten_thousandths: i64,
}

impl Money {
    const SCALE: i64 = 10_000;

    pub fn from_units(units: i64) -> Money {
        Money {
            ten_thousandths: units.saturating_mul(Self::SCALE),
        }
    }

    pub fn ten_thousandths(self) -> i64 {
        self.ten_thousandths
    }

    pub fn from_ten_thousandths(v: i64) -> Money {
        Money { ten_thousandths: v }
    }
}

impl FromStr for Money {
    type Err = String;

    fn from_str(s: &str) -> Result<Money, String> {
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 14 || !digits_ok(whole) {
            return Err(format!(
                "amount {s:?} must be a non-negative decimal string with at most 14 integer digits, e.g. \"120.50\""
            ));
        }
        if frac.len() > 4 || !digits_ok(frac) || (s.contains('.') && frac.is_empty()) {
            return Err(format!("amount {s:?} may have at most 4 decimal places"));
        }
        let whole: i64 = whole
            .parse()
            .map_err(|_| format!("amount {s:?} is out of range"))?;
        let mut frac_value: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().unwrap_or(0)
        };
        for _ in frac.len()..4 {
            frac_value *= 10;
        }
        Ok(Money {
            ten_thousandths: whole * Self::SCALE + frac_value,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.ten_thousandths / Self::SCALE;
        let frac = self.ten_thousandths % Self::SCALE;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let s = format!("{frac:04}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        for (text, expected) in [
            ("0", "0"),
            ("120.5", "120.5"),
            ("120.50", "120.5"),
            ("7.0001", "7.0001"),
        ] {
            let m: Money = text.parse().unwrap();
            assert_eq!(m.to_string(), expected);
        }
        assert!(Money::from_str("100.00").unwrap() > Money::from_str("99.9999").unwrap());
        assert_eq!(Money::from_str("100").unwrap(), Money::from_units(100));
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        for bad in [
            "",
            "-1",
            "1e3",
            "1.",
            ".5",
            "1.23456",
            "12,5",
            "999999999999999",
        ] {
            assert!(Money::from_str(bad).is_err(), "{bad} should be refused");
        }
    }
}
