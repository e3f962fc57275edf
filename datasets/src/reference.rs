//! The real reference data the generator builds on, embedded at build time
//! (`datasets/reference/`, with sources and licences in its README).

use rand::Rng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const AREAS: &str = include_str!("../reference/admin-divisions/areas.csv");
const STREETS: &str = include_str!("../reference/admin-divisions/streets_guangzhou_4401.csv");
const VILLAGES: &str = include_str!("../reference/admin-divisions/villages_guangzhou_4401.csv");
const SURNAMES: &str = include_str!("../reference/names/wainshine_Chinese_Family_Name_1k.csv");
const CHARS: &str = include_str!("../reference/names/ngender_charfreq.csv");

fn rows(text: &str) -> Vec<csv::StringRecord> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes())
        .records()
        .filter_map(|r| r.ok())
        .collect()
}

/// A district (区) of Guangzhou.
#[derive(Debug, Clone)]
pub struct District {
    /// 6-digit code.
    pub code: String,
    /// Name, e.g. 天河区.
    pub name: String,
}

/// A street or town (街道/镇).
#[derive(Debug, Clone)]
pub struct Street {
    /// 9-digit code.
    pub code: String,
    /// Name, e.g. 石牌街道.
    pub name: String,
}

/// A community or village (社区/村).
#[derive(Debug, Clone)]
pub struct Community {
    /// 12-digit code.
    pub code: String,
    /// Official name, e.g. 翠洲社区居民委员会.
    pub name: String,
    /// Short name for display, e.g. 翠洲社区.
    pub short: String,
}

/// Guangzhou's districts, streets and communities, by code.
#[derive(Debug)]
pub struct Geography {
    /// Districts by code.
    pub districts: BTreeMap<String, District>,
    /// Streets by code.
    pub streets: BTreeMap<String, Street>,
    /// Communities, in code order.
    pub communities: Vec<Community>,
}

impl Geography {
    /// The district of a code's first 6 digits.
    pub fn district(&self, code: &str) -> Option<&District> {
        self.districts.get(code.get(..6)?)
    }
    /// The street of a code's first 9 digits.
    pub fn street(&self, code: &str) -> Option<&Street> {
        self.streets.get(code.get(..9)?)
    }
}

fn short_name(name: &str) -> String {
    for suffix in ["居民委员会", "村民委员会", "委员会"] {
        if let Some(s) = name.strip_suffix(suffix) {
            return s.to_string();
        }
    }
    name.to_string()
}

/// Guangzhou (4401): 11 districts, 178 streets, 2,851 communities.
pub fn guangzhou() -> &'static Geography {
    static G: OnceLock<Geography> = OnceLock::new();
    G.get_or_init(|| {
        let districts = rows(AREAS)
            .iter()
            .filter(|r| r.get(0).is_some_and(|c| c.starts_with("4401")))
            .map(|r| {
                let code = r.get(0).unwrap_or("").to_string();
                (
                    code.clone(),
                    District {
                        code,
                        name: r.get(1).unwrap_or("").to_string(),
                    },
                )
            })
            .collect();
        let streets = rows(STREETS)
            .iter()
            .map(|r| {
                let code = r.get(0).unwrap_or("").to_string();
                (
                    code.clone(),
                    Street {
                        code,
                        name: r.get(1).unwrap_or("").to_string(),
                    },
                )
            })
            .collect();
        let mut communities: Vec<Community> = rows(VILLAGES)
            .iter()
            .map(|r| {
                let name = r.get(1).unwrap_or("").to_string();
                Community {
                    code: r.get(0).unwrap_or("").to_string(),
                    short: short_name(&name),
                    name,
                }
            })
            .collect();
        communities.sort_by(|a, b| a.code.cmp(&b.code));
        Geography {
            districts,
            streets,
            communities,
        }
    })
}

/// County-level address codes of all China, grouped by province, for identity numbers.
#[derive(Debug)]
pub struct Areas {
    /// Codes by 2-digit province prefix.
    pub by_province: BTreeMap<String, Vec<String>>,
    /// Guangzhou's own district codes.
    pub guangzhou: Vec<String>,
}

/// The address codes.
pub fn areas() -> &'static Areas {
    static A: OnceLock<Areas> = OnceLock::new();
    A.get_or_init(|| {
        let mut by_province: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut guangzhou = Vec::new();
        for r in rows(AREAS) {
            let code = r.get(0).unwrap_or("");
            if code.len() != 6 {
                continue;
            }
            if code.starts_with("4401") {
                guangzhou.push(code.to_string());
            }
            by_province
                .entry(code[..2].to_string())
                .or_default()
                .push(code.to_string());
        }
        Areas {
            by_province,
            guangzhou,
        }
    })
}

/// Where Guangzhou's migrants come from: province prefix and weight (Guangdong, then its
/// neighbours and the large labour-exporting provinces).
pub const MIGRANT_ORIGINS: &[(&str, u32)] = &[
    ("44", 34),
    ("43", 14),
    ("45", 10),
    ("51", 6),
    ("36", 6),
    ("41", 6),
    ("42", 5),
    ("35", 3),
    ("50", 3),
    ("52", 3),
    ("34", 2),
    ("46", 2),
    ("37", 2),
    ("53", 1),
    ("61", 1),
    ("32", 1),
    ("33", 1),
    ("13", 1),
    ("23", 1),
    ("22", 1),
    ("21", 1),
    ("62", 1),
];

/// Surnames and given-name characters with their weights.
pub struct Names {
    surnames: Vec<String>,
    surname_w: WeightedIndex<f64>,
    male: Vec<char>,
    male_w: WeightedIndex<f64>,
    female: Vec<char>,
    female_w: WeightedIndex<f64>,
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names")
            .field("surnames", &self.surnames.len())
            .field("male", &self.male.len())
            .field("female", &self.female.len())
            .finish()
    }
}

/// The name weights.
pub fn names() -> &'static Names {
    static N: OnceLock<Names> = OnceLock::new();
    N.get_or_init(|| {
        let mut surnames = Vec::new();
        let mut sw = Vec::new();
        for r in rows(SURNAMES) {
            if let (Some(n), Some(w)) = (r.get(0), r.get(1).and_then(|w| w.parse::<f64>().ok()))
                && !n.is_empty()
                && w > 0.0
            {
                surnames.push(n.to_string());
                sw.push(w);
            }
        }
        let (mut male, mut mw, mut female, mut fw) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in rows(CHARS) {
            let Some(c) = r.get(0).and_then(|s| s.chars().next()) else {
                continue;
            };
            let m = r.get(1).and_then(|w| w.parse::<f64>().ok()).unwrap_or(0.0);
            let f = r.get(2).and_then(|w| w.parse::<f64>().ok()).unwrap_or(0.0);
            // Characters used mostly by the other sex are left out, so that names read right.
            if m > 0.0 && m >= f * 0.5 {
                male.push(c);
                mw.push(m);
            }
            if f > 0.0 && f >= m * 0.5 {
                female.push(c);
                fw.push(f);
            }
        }
        let wi = |w: &[f64]| {
            WeightedIndex::new(w)
                .unwrap_or_else(|_| WeightedIndex::new([1.0]).unwrap_or_else(|_| unreachable!()))
        };
        Names {
            surname_w: wi(&sw),
            surnames,
            male_w: wi(&mw),
            male,
            female_w: wi(&fw),
            female,
        }
    })
}

impl Names {
    /// A name: a weighted surname and one or two weighted given-name characters for the sex.
    pub fn draw(&self, rng: &mut impl Rng, male: bool) -> String {
        let mut s = self.surnames[self.surname_w.sample(rng)].clone();
        let (chars, w) = if male {
            (&self.male, &self.male_w)
        } else {
            (&self.female, &self.female_w)
        };
        let n = if rng.random_bool(0.72) { 2 } else { 1 };
        for _ in 0..n {
            s.push(chars[w.sample(rng)]);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn guangzhou_has_its_real_divisions() {
        let g = guangzhou();
        assert_eq!(g.districts.len(), 11);
        assert_eq!(g.streets.len(), 178);
        assert_eq!(g.communities.len(), 2851);
        assert_eq!(
            g.district("440106001001").map(|d| d.name.as_str()),
            Some("天河区")
        );
        assert!(g.communities.iter().all(|c| g.street(&c.code).is_some()));
        assert!(areas().by_province.contains_key("44"));
        assert_eq!(areas().guangzhou.len(), 11);
    }

    #[test]
    fn names_look_chinese() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let n = names().draw(&mut rng, true);
        let len = n.chars().count();
        assert!((2..=4).contains(&len), "{n}");
        assert!(n.chars().all(|c| c as u32 > 0x3000), "{n}");
    }
}
