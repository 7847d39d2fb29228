//! The group-mapping text an admin types for a connection:
//! `Marketing Team -> marketing, Sales Team -> sales`.
//!
//! Parsed strictly when saved, so a typo is reported at the field instead of silently
//! dropping people's access at their next login.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::error::{Validated, ValidationError};
use super::validate;

/// A parsed mapping: IdP group (name or id) → ssogate group names, in the order written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupMapping {
    entries: Vec<(String, String)>,
    by_idp_group: HashMap<String, Vec<usize>>,
}

impl GroupMapping {
    /// Parses entries separated by commas or new lines; blank entries are skipped.
    pub fn parse(text: &str) -> Validated<Self> {
        let mut mapping = GroupMapping::default();
        let mut seen = HashSet::new();
        let raw_entries = text.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty());
        for (index, entry) in raw_entries.enumerate() {
            let n = index + 1;
            let bad = |why: String| ValidationError::new("", format!("entry {n} (`{entry}`) {why}"));
            let mut sides = entry.split("->");
            let (idp, target) = match (sides.next(), sides.next(), sides.next()) {
                (Some(l), Some(r), None) => (l.trim(), r.trim()),
                (_, None, _) => return Err(bad("has no `->`; write `IdP group -> ssogate group`".into())),
                _ => return Err(bad("has more than one `->`".into())),
            };
            if idp.is_empty() {
                return Err(bad("has no IdP group before `->`".into()));
            }
            if target.is_empty() {
                return Err(bad("has no ssogate group after `->`".into()));
            }
            validate::group_name("", target).map_err(|e| bad(format!("maps to an invalid group name: {}", e.message)))?;
            if !seen.insert((idp.to_owned(), target.to_owned())) {
                return Err(bad("is a duplicate".into()));
            }
            mapping.by_idp_group.entry(idp.to_owned()).or_default().push(mapping.entries.len());
            mapping.entries.push((idp.to_owned(), target.to_owned()));
        }
        Ok(mapping)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The ssogate groups an IdP group is mapped to by name or by IdP id; `None` when
    /// the mapping does not mention it (then the 1:1 rule applies).
    pub fn targets(&self, idp_name: &str, idp_id: Option<&str>) -> Option<Vec<&str>> {
        let mut indexes: Vec<usize> = self.by_idp_group.get(idp_name).cloned().unwrap_or_default();
        if let Some(ids) = idp_id.and_then(|id| self.by_idp_group.get(id)) {
            for &i in ids {
                if !indexes.contains(&i) {
                    indexes.push(i);
                }
            }
        }
        if indexes.is_empty() {
            return None;
        }
        indexes.sort_unstable();
        Some(indexes.into_iter().map(|i| self.entries[i].1.as_str()).collect())
    }

    /// Every ssogate group the mapping can place someone in.
    pub fn target_groups(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(_, t)| t.as_str())
    }
}

/// The canonical text form, `A -> b, C -> d`, which is what gets stored.
impl fmt::Display for GroupMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (idp, target)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{idp} -> {target}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        GroupMapping::parse(text).unwrap_err().message
    }

    #[test]
    fn parses_the_documented_format() {
        let m = GroupMapping::parse("Marketing Team -> marketing, Sales Team -> sales").unwrap();
        assert_eq!(m.targets("Marketing Team", None), Some(vec!["marketing"]));
        assert_eq!(m.targets("Sales Team", None), Some(vec!["sales"]));
        assert_eq!(m.targets("Sales", None), None);
        assert_eq!(m.to_string(), "Marketing Team -> marketing, Sales Team -> sales");
    }

    #[test]
    fn trims_allows_spaces_newlines_and_many_to_many() {
        let m = GroupMapping::parse("  eng  ->  all apps \n ops -> all apps,\n eng -> builder ,").unwrap();
        assert_eq!(m.targets("eng", None), Some(vec!["all apps", "builder"]));
        assert_eq!(m.targets("ops", None), Some(vec!["all apps"]));
        assert_eq!(m.target_groups().collect::<Vec<_>>(), ["all apps", "all apps", "builder"]);
    }

    #[test]
    fn idp_groups_can_be_referenced_by_id() {
        let m = GroupMapping::parse("6f1c-aa -> marketing, Sales -> sales").unwrap();
        assert_eq!(m.targets("Marketing (EU)", Some("6f1c-aa")), Some(vec!["marketing"]));
        assert_eq!(m.targets("Sales", Some("other-id")), Some(vec!["sales"]));
    }

    #[test]
    fn empty_text_is_an_empty_mapping() {
        assert!(GroupMapping::parse("").unwrap().is_empty());
        assert!(GroupMapping::parse(" ,\n ").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_entries_naming_them() {
        assert!(err("a -> b, Sales Team").contains("entry 2 (`Sales Team`) has no `->`"));
        assert!(err(" -> b").contains("no IdP group"));
        assert!(err("a -> ").contains("no ssogate group"));
        assert!(err("a -> b -> c").contains("more than one"));
        assert!(err("a -> b, a -> b").contains("entry 2 (`a -> b`) is a duplicate"));
        assert!(err("a -> x\u{1}y").contains("invalid group name"));
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        // A small deterministic fuzz: random strings over an alphabet rich in delimiters.
        let alphabet: Vec<char> = "ab ->,\n\t-\u{0}é>".chars().collect();
        let mut state: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            let len = (state % 24) as usize;
            let s: String = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            if let Ok(m) = GroupMapping::parse(&s) {
                // The canonical form must parse back to the same mapping.
                assert_eq!(GroupMapping::parse(&m.to_string()).unwrap(), m, "{s:?}");
            }
        }
    }
}
