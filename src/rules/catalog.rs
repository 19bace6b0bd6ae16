//! The built-in Microsoft Entra role catalog: lets rule files name roles ("Global Administrator")
//! instead of GUIDs, and gives every built-in role a [`Tier`] so Critical roles can be protected
//! from accidental auto-approval.
//!
//! The data lives in `catalog_data.rs` (with the tier rationale and its sources); this file holds
//! the lookups. Lookups are case-insensitive because operators type names and GUIDs by hand and
//! Entra itself is inconsistent about GUID case.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Deserializer, Serialize};

#[path = "catalog_data.rs"]
mod data;

/// How much harm an unwanted activation of a role can do (see `catalog_data.rs` for the rationale).
///
/// Ordered by severity, so `tier >= Tier::High` reads as "High or Critical"; the variant order
/// (most severe first) is only the order of declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Can take over the tenant or grant itself any other role.
    Critical,
    /// Privileged, or administers a whole workload.
    High,
    /// Other administrators.
    Medium,
    /// Readers and narrowly limited roles.
    Low,
}

impl Tier {
    /// All tiers, most severe first.
    pub const ALL: [Tier; 4] = [Tier::Critical, Tier::High, Tier::Medium, Tier::Low];

    /// The lower-case name used in configuration, logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Critical => "critical",
            Tier::High => "high",
            Tier::Medium => "medium",
            Tier::Low => "low",
        }
    }

    /// Accepts any letter case and surrounding whitespace, as operators write `Critical` or `critical`.
    pub fn parse(text: &str) -> Option<Tier> {
        let text = text.trim();
        Tier::ALL
            .into_iter()
            .find(|tier| tier.as_str().eq_ignore_ascii_case(text))
    }

    fn severity(self) -> u8 {
        match self {
            Tier::Low => 0,
            Tier::Medium => 1,
            Tier::High => 2,
            Tier::Critical => 3,
        }
    }
}

impl PartialOrd for Tier {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Tier {
    fn cmp(&self, other: &Self) -> Ordering {
        self.severity().cmp(&other.severity())
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Deserialized through [`Tier::parse`] so configuration accepts the same spellings as the CLI.
impl<'de> Deserialize<'de> for Tier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Tier::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown tier `{text}`, expected one of critical, high, medium, low"
            ))
        })
    }
}

/// One built-in role: `id` is the role template id, which is the same in every tenant and is the
/// `roleDefinitionId` PIM sends for a built-in role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuiltinRole {
    pub id: &'static str,
    pub name: &'static str,
    pub tier: Tier,
}

/// The role whose template id is `id` (any letter case, surrounding whitespace ignored).
pub fn by_id(id: &str) -> Option<&'static BuiltinRole> {
    BY_ID.get(id.trim().to_ascii_lowercase().as_str()).copied()
}

/// The role named `name`, ignoring letter case and extra whitespace. Former display names of a
/// role (e.g. "Company Administrator", "Power BI Administrator") resolve to the role as it is
/// named today, so older rule files keep working.
pub fn by_name(name: &str) -> Option<&'static BuiltinRole> {
    BY_NAME.get(normalize_name(name).as_str()).copied()
}

/// A role given either as a template id or as a name, the two forms rule files accept.
pub fn resolve(id_or_name: &str) -> Option<&'static BuiltinRole> {
    by_id(id_or_name).or_else(|| by_name(id_or_name))
}

/// Every built-in role, alphabetical by name.
pub fn all() -> &'static [BuiltinRole] {
    data::ROLES
}

/// Up to `limit` role names closest to `name` (edit distance / shared words), for "did you mean"
/// messages. Names too far from `name` to be a plausible typo are left out, so the result may be
/// shorter than `limit`, or empty.
pub fn suggest(name: &str, limit: usize) -> Vec<&'static str> {
    let query = normalize_name(name);
    if query.is_empty() || limit == 0 {
        return Vec::new();
    }
    let query_words: Vec<&str> = query.split(' ').collect();
    let mut best: HashMap<&'static str, f64> = HashMap::new();
    let candidates = data::ROLES.iter().map(|role| (role.name, role.name)).chain(
        data::FORMER_NAMES
            .iter()
            .filter_map(|(former, id)| by_id(id).map(|role| (*former, role.name))),
    );
    for (spelling, current_name) in candidates {
        let score = similarity(&query, &query_words, &spelling.to_ascii_lowercase());
        if score >= MIN_SUGGESTION_SCORE {
            let entry = best.entry(current_name).or_insert(score);
            *entry = entry.max(score);
        }
    }
    let mut ranked: Vec<(&'static str, f64)> = best.into_iter().collect();
    ranked.sort_by(|(name_a, score_a), (name_b, score_b)| {
        score_b.total_cmp(score_a).then_with(|| name_a.cmp(name_b))
    });
    ranked
        .into_iter()
        .take(limit)
        .map(|(name, _)| name)
        .collect()
}

/// Below this, a name shares too little with the query to be worth suggesting.
const MIN_SUGGESTION_SCORE: f64 = 0.4;

static BY_ID: LazyLock<HashMap<&'static str, &'static BuiltinRole>> =
    LazyLock::new(|| data::ROLES.iter().map(|role| (role.id, role)).collect());

static BY_NAME: LazyLock<HashMap<String, &'static BuiltinRole>> = LazyLock::new(|| {
    let mut index: HashMap<String, &'static BuiltinRole> = data::FORMER_NAMES
        .iter()
        .filter_map(|(former, id)| BY_ID.get(id).map(|role| (normalize_name(former), *role)))
        .collect();
    // Current names are inserted last so they win over a former name spelled the same way.
    index.extend(
        data::ROLES
            .iter()
            .map(|role| (normalize_name(role.name), role)),
    );
    index
});

fn normalize_name(name: &str) -> String {
    name.split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// 0.0 (nothing in common) to 1.0 (equal). Word matching catches abbreviations ("Global Admin")
/// and reordering; whole-string edit distance catches typos that split or join words.
fn similarity(query: &str, query_words: &[&str], candidate: &str) -> f64 {
    let candidate_words: Vec<&str> = candidate.split(' ').collect();
    let matched: f64 = query_words
        .iter()
        .map(|query_word| {
            candidate_words
                .iter()
                .map(|candidate_word| word_similarity(query_word, candidate_word))
                .fold(0.0, f64::max)
        })
        .sum();
    let word_score = matched / query_words.len().max(candidate_words.len()) as f64;
    let whole_score = 1.0 - ratio(strsim::levenshtein(query, candidate), query, candidate);
    0.75 * word_score + 0.25 * whole_score
}

fn word_similarity(query_word: &str, candidate_word: &str) -> f64 {
    if query_word == candidate_word {
        return 1.0;
    }
    // An abbreviation: "admin" for "administrator", "sync" for "synchronization".
    if query_word.len() >= 3 && candidate_word.starts_with(query_word) {
        return 0.9;
    }
    let score = 1.0
        - ratio(
            strsim::levenshtein(query_word, candidate_word),
            query_word,
            candidate_word,
        );
    if score >= 0.6 { score } else { 0.0 }
}

fn ratio(distance: usize, a: &str, b: &str) -> f64 {
    let longest = a.chars().count().max(b.chars().count()).max(1);
    distance as f64 / longest as f64
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const KNOWN: [(&str, &str, Tier); 6] = [
        (
            "62e90394-69f5-4237-9190-012177145e10",
            "Global Administrator",
            Tier::Critical,
        ),
        (
            "e8611ab8-c189-46e8-94e1-60213ab1f814",
            "Privileged Role Administrator",
            Tier::Critical,
        ),
        (
            "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
            "Privileged Authentication Administrator",
            Tier::Critical,
        ),
        (
            "194ae4cb-b126-40b2-bd5b-6091b380977d",
            "Security Administrator",
            Tier::Critical,
        ),
        (
            "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9",
            "Conditional Access Administrator",
            Tier::Critical,
        ),
        (
            "fe930be7-5e62-47db-91af-98c3a49a38b1",
            "User Administrator",
            Tier::Critical,
        ),
    ];

    #[test]
    fn known_ids_resolve_to_their_names_and_tiers() {
        for (id, name, tier) in KNOWN {
            let role = by_id(id).unwrap_or_else(|| panic!("{id} ({name}) is missing"));
            assert_eq!(role.name, name, "name of {id}");
            assert_eq!(role.tier, tier, "tier of {name}");
        }
    }

    #[test]
    fn known_names_resolve_to_their_ids() {
        for (id, name, _) in KNOWN {
            assert_eq!(by_name(name).map(|role| role.id), Some(id), "id of {name}");
        }
    }

    #[test]
    fn by_id_ignores_letter_case_and_surrounding_whitespace() {
        let role = by_id("  62E90394-69F5-4237-9190-012177145E10\n");
        assert_eq!(role.map(|role| role.name), Some("Global Administrator"));
    }

    #[test]
    fn by_name_ignores_letter_case_and_extra_whitespace() {
        for spelling in [
            "global administrator",
            "  GLOBAL ADMINISTRATOR\t",
            "Global   Administrator",
        ] {
            assert_eq!(
                by_name(spelling).map(|role| role.id),
                Some("62e90394-69f5-4237-9190-012177145e10"),
                "spelling {spelling:?}"
            );
        }
    }

    #[test]
    fn unknown_ids_and_names_are_not_found() {
        assert_eq!(by_id("00000000-0000-0000-0000-000000000000"), None);
        assert_eq!(by_id(""), None);
        assert_eq!(by_name("Global Admin"), None);
        assert_eq!(by_name(""), None);
    }

    #[test]
    fn former_names_resolve_to_the_renamed_role() {
        let cases = [
            ("Company Administrator", "Global Administrator"),
            ("Power BI Administrator", "Fabric Administrator"),
            (
                "Azure AD Joined Device Local Administrator",
                "Microsoft Entra Joined Device Local Administrator",
            ),
            ("Partner Tier 2 Support", "Partner Tier2 Support"),
        ];
        for (former, current) in cases {
            assert_eq!(
                by_name(former).map(|role| role.name),
                Some(current),
                "former name {former}"
            );
        }
    }

    #[test]
    fn every_former_name_points_at_a_shipped_role_and_shadows_no_current_name() {
        for (former, id) in data::FORMER_NAMES {
            assert!(
                by_id(id).is_some(),
                "former name {former} points at unknown id {id}"
            );
            let clash = all()
                .iter()
                .find(|role| role.name.eq_ignore_ascii_case(former));
            assert_eq!(clash, None, "former name {former} is also a current name");
        }
    }

    #[test]
    fn resolve_accepts_an_id_or_a_name() {
        assert_eq!(
            resolve("fe930be7-5e62-47db-91af-98c3a49a38b1").map(|role| role.name),
            Some("User Administrator")
        );
        assert_eq!(
            resolve("user administrator").map(|role| role.id),
            Some("fe930be7-5e62-47db-91af-98c3a49a38b1")
        );
        assert_eq!(resolve("nobody"), None);
    }

    #[test]
    fn ids_are_unique() {
        let mut seen = HashSet::new();
        for role in all() {
            assert!(seen.insert(role.id), "duplicate id {}", role.id);
        }
    }

    #[test]
    fn names_are_unique_ignoring_case() {
        let mut seen = HashSet::new();
        for role in all() {
            assert!(
                seen.insert(normalize_name(role.name)),
                "duplicate name {}",
                role.name
            );
        }
    }

    #[test]
    fn every_id_is_a_lower_case_guid() {
        for role in all() {
            let parsed = uuid::Uuid::parse_str(role.id);
            assert!(
                parsed.is_ok(),
                "{} has id {} that is not a GUID",
                role.name,
                role.id
            );
            assert_eq!(
                role.id.len(),
                36,
                "{} id {} is not hyphenated",
                role.name,
                role.id
            );
            assert_eq!(
                role.id,
                role.id.to_ascii_lowercase(),
                "{} id is not lower case",
                role.name
            );
        }
    }

    #[test]
    fn every_name_is_trimmed_with_single_spaces() {
        for role in all() {
            assert_eq!(
                role.name.split_whitespace().collect::<Vec<_>>().join(" "),
                role.name
            );
        }
    }

    #[test]
    fn the_catalog_is_complete_enough_to_be_useful() {
        assert!(all().len() >= 120, "only {} roles", all().len());
    }

    #[test]
    fn roles_listed_as_critical_by_the_spec_are_critical() {
        let critical = [
            "Global Administrator",
            "Privileged Role Administrator",
            "Privileged Authentication Administrator",
            "Partner Tier2 Support",
            "Hybrid Identity Administrator",
            "Security Administrator",
            "Conditional Access Administrator",
            "Application Administrator",
            "Cloud Application Administrator",
            "Domain Name Administrator",
            "External Identity Provider Administrator",
            "Authentication Policy Administrator",
            "Intune Administrator",
            "User Administrator",
            "Authentication Administrator",
            "Directory Synchronization Accounts",
            "Lifecycle Workflows Administrator",
        ];
        for name in critical {
            assert_eq!(
                by_name(name).map(|role| role.tier),
                Some(Tier::Critical),
                "tier of {name}"
            );
        }
    }

    #[test]
    fn example_roles_of_the_other_tiers_have_their_tier() {
        let cases = [
            ("Exchange Administrator", Tier::High),
            ("SharePoint Administrator", Tier::High),
            ("Teams Administrator", Tier::High),
            ("Azure DevOps Administrator", Tier::High),
            ("Billing Administrator", Tier::High),
            ("License Administrator", Tier::Medium),
            ("Global Reader", Tier::Low),
            ("Reports Reader", Tier::Low),
            ("Message Center Reader", Tier::Low),
        ];
        for (name, tier) in cases {
            assert_eq!(
                by_name(name).map(|role| role.tier),
                Some(tier),
                "tier of {name}"
            );
        }
    }

    #[test]
    fn every_tier_is_used() {
        for tier in Tier::ALL {
            assert!(
                all().iter().any(|role| role.tier == tier),
                "no role is {tier}"
            );
        }
    }

    #[test]
    fn suggest_completes_an_abbreviated_name() {
        let suggestions = suggest("Global Admin", 3);
        assert!(
            suggestions.contains(&"Global Administrator"),
            "{suggestions:?}"
        );
        assert_eq!(
            suggestions.first(),
            Some(&"Global Administrator"),
            "{suggestions:?}"
        );
    }

    #[test]
    fn suggest_corrects_a_typo() {
        let suggestions = suggest("Exchange Admnistrator", 3);
        assert_eq!(
            suggestions.first(),
            Some(&"Exchange Administrator"),
            "{suggestions:?}"
        );
    }

    #[test]
    fn suggest_finds_a_role_by_its_former_name_under_its_current_name() {
        let suggestions = suggest("Power BI Admin", 3);
        assert!(
            suggestions.contains(&"Fabric Administrator"),
            "{suggestions:?}"
        );
    }

    #[test]
    fn suggest_returns_at_most_limit_names_without_duplicates() {
        let suggestions = suggest("Administrator", 5);
        assert_eq!(suggestions.len(), 5, "{suggestions:?}");
        let unique: HashSet<_> = suggestions.iter().collect();
        assert_eq!(unique.len(), suggestions.len(), "{suggestions:?}");
        assert!(suggest("Global Admin", 0).is_empty());
    }

    #[test]
    fn suggest_offers_nothing_for_unrelated_text() {
        assert_eq!(suggest("zzzz qqqq", 3), Vec::<&str>::new());
        assert_eq!(suggest("   ", 3), Vec::<&str>::new());
    }

    #[test]
    fn tier_round_trips_through_its_name() {
        for tier in Tier::ALL {
            assert_eq!(Tier::parse(tier.as_str()), Some(tier));
        }
        assert_eq!(Tier::parse(" Critical "), Some(Tier::Critical));
        assert_eq!(Tier::parse("HIGH"), Some(Tier::High));
        assert_eq!(Tier::parse("severe"), None);
    }

    #[test]
    fn tiers_order_by_severity() {
        assert!(Tier::Critical > Tier::High);
        assert!(Tier::High > Tier::Medium);
        assert!(Tier::Medium > Tier::Low);
    }

    #[test]
    fn tier_serializes_lower_case_and_deserializes_any_case() {
        assert_eq!(
            serde_json::to_string(&Tier::Critical).ok().as_deref(),
            Some("\"critical\"")
        );
        let parsed: Result<Tier, _> = serde_json::from_str("\"Critical\"");
        assert_eq!(parsed.ok(), Some(Tier::Critical));
        let unknown: Result<Tier, _> = serde_json::from_str("\"severe\"");
        let message = unknown
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(message.contains("unknown tier `severe`"), "{message}");
    }
}
