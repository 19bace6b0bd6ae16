//! The policy index: which policies a request could possibly match, found by key lookups instead of
//! by trying every policy, so selection costs about the same with 10 policies or 10,000.
//!
//! Each policy is filed under one criterion of its `match` that a request answers with an exact key:
//! its roles, else its groups, else its scopes, else its principals, else its tiers; a policy with
//! none of these (a catch-all, or one narrowed only by resource type, group access or action) is a
//! candidate for every request. A request looks up its own role, group, scope (and every parent of
//! it, for `/*` patterns), principal and tier, and gets the union of those lists and the unkeyed
//! policies in policy order. The
//! index only rules policies *out*: every candidate is still judged by the full `Matcher::mismatch`
//! and `when`, so first match wins exactly as in a scan of every policy.
//!
//! The same structure answers "which earlier policies could cover this one" for the unreachable-
//! policy warning at load, which would otherwise compare every policy with every policy above it.

use std::collections::HashMap;
use std::hash::Hash;

use crate::payload::{ActivationRequest, Target};
use crate::rules::catalog::Tier;
use crate::rules::matcher::{self, Matcher, ScopePattern};

/// Policy positions (indexes into `RuleSet::policies`) per key; every list is ascending because
/// policies are inserted in load order.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyIndex {
    /// How many policies were offered to [`PolicyIndex::insert`]; a mismatch with the rule set's
    /// length means the policies were edited after load and the index cannot be trusted.
    offered: usize,
    roles: HashMap<String, Vec<usize>>,
    groups: HashMap<String, Vec<usize>>,
    exact_scopes: HashMap<String, Vec<usize>>,
    /// `/base/*` patterns, by `base`.
    scopes_under: HashMap<String, Vec<usize>>,
    principals: HashMap<String, Vec<usize>>,
    tiers: HashMap<Tier, Vec<usize>>,
    /// Policies with no keyed criterion. Not split by action: catch-alls are few, and the service's
    /// passed-over list keeps naming a catch-all for other actions ("action does not match"), the
    /// first thing to read when an extension or a deactivation finds no policy.
    unkeyed: Vec<usize>,
}

/// The criterion a policy is filed under.
enum Filed<'m> {
    Roles(&'m [String]),
    Groups(&'m [String]),
    Scopes(&'m [ScopePattern]),
    Principals(&'m [String]),
    Tiers(&'m [Tier]),
    Unkeyed,
}

/// A `/*` pattern with an empty base matches every scope: no use as a key.
fn scopes_are_keys(scopes: &[ScopePattern]) -> bool {
    !scopes
        .iter()
        .any(|pattern| matches!(pattern, ScopePattern::Under(base) if base.is_empty()))
}

/// Roles first: they are the most selective key operators write, and one role rarely has many
/// policies. Any choice is correct; it only changes how many candidates a request gets.
fn filed_under(matcher: &Matcher) -> Filed<'_> {
    if let Some(roles) = &matcher.roles {
        Filed::Roles(roles)
    } else if let Some(groups) = &matcher.groups {
        Filed::Groups(groups)
    } else if let Some(scopes) = matcher.scopes.as_ref().filter(|s| scopes_are_keys(s)) {
        Filed::Scopes(scopes)
    } else if let Some(principals) = &matcher.principals {
        Filed::Principals(principals)
    } else if let Some(tiers) = matcher
        .tiers
        .as_ref()
        .filter(|_| matcher.tiered_groups.is_empty())
    {
        Filed::Tiers(tiers)
    } else {
        Filed::Unkeyed
    }
}

fn file<K: Hash + Eq>(map: &mut HashMap<K, Vec<usize>>, key: K, position: usize) {
    let list = map.entry(key).or_default();
    // A key repeated within one policy's list files the policy once.
    if list.last() != Some(&position) {
        list.push(position);
    }
}

fn list<'i, K, Q>(map: &'i HashMap<K, Vec<usize>>, key: &Q) -> &'i [usize]
where
    K: Hash + Eq + std::borrow::Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    map.get(key).map(Vec::as_slice).unwrap_or_default()
}

impl PolicyIndex {
    /// Every policy of a rule set, in load order.
    pub(crate) fn build<'m>(matchers: impl IntoIterator<Item = &'m Matcher>) -> PolicyIndex {
        let mut index = PolicyIndex::default();
        for matcher in matchers {
            index.insert(index.offered, matcher);
        }
        index
    }

    /// Files the policy at `position`; positions must be offered in ascending order.
    pub(crate) fn insert(&mut self, position: usize, matcher: &Matcher) {
        self.offered = self.offered.max(position + 1);
        match filed_under(matcher) {
            Filed::Roles(roles) => roles
                .iter()
                .for_each(|role| file(&mut self.roles, role.clone(), position)),
            Filed::Groups(groups) => groups
                .iter()
                .for_each(|group| file(&mut self.groups, group.clone(), position)),
            Filed::Scopes(scopes) => {
                for pattern in scopes {
                    match pattern {
                        ScopePattern::Exact(scope) => {
                            file(&mut self.exact_scopes, scope.clone(), position);
                        }
                        ScopePattern::Under(base) => {
                            file(&mut self.scopes_under, base.clone(), position);
                        }
                    }
                }
            }
            Filed::Principals(principals) => principals
                .iter()
                .for_each(|principal| file(&mut self.principals, principal.clone(), position)),
            Filed::Tiers(tiers) => tiers
                .iter()
                .for_each(|tier| file(&mut self.tiers, *tier, position)),
            Filed::Unkeyed => self.unkeyed.push(position),
        }
    }

    /// How many policies the index was built over.
    pub(crate) fn len(&self) -> usize {
        self.offered
    }

    /// The positions of every policy that could match `request`, ascending, each once (the action is
    /// left to the matcher: every policy restricts it, so it rules nothing out for free). A superset
    /// of the policies that do match.
    pub(crate) fn candidates(&self, request: &ActivationRequest) -> Candidates<'_> {
        let mut lists = Vec::with_capacity(8);
        if let Some(role) = matcher::target_role(request) {
            lists.push(list(&self.roles, role.to_ascii_lowercase().as_str()));
        }
        if let Target::Group { group_id, .. } = &request.target {
            lists.push(list(&self.groups, group_id.to_ascii_lowercase().as_str()));
        }
        let scope = request.scope().to_ascii_lowercase();
        lists.push(list(&self.exact_scopes, scope.as_str()));
        // `Under(base)` matches `base` itself and every scope below it: look up each parent.
        lists.push(list(&self.scopes_under, scope.as_str()));
        for (at, _) in scope.match_indices('/').filter(|(at, _)| *at > 0) {
            if let Some(parent) = scope.get(..at) {
                lists.push(list(&self.scopes_under, parent));
            }
        }
        lists.push(list(
            &self.principals,
            request.principal_id.to_ascii_lowercase().as_str(),
        ));
        if let Some(tier) = matcher::target_tier(request) {
            lists.push(list(&self.tiers, &tier));
        }
        lists.push(&self.unkeyed);
        Candidates::new(lists)
    }

    /// The positions of every indexed policy that could cover `narrow` (match every request it
    /// matches, see `Matcher::covers`), ascending; `None` when `narrow` has an empty criterion
    /// list and the index cannot narrow the search. A policy covering `narrow` restricts its own
    /// filed criterion to values that include all of `narrow`'s, so it is filed under `narrow`'s
    /// first value of that criterion.
    pub(crate) fn covering_candidates(&self, narrow: &Matcher) -> Option<Candidates<'_>> {
        fn first<T>(values: &Option<Vec<T>>) -> Result<Option<&T>, ()> {
            match values {
                None => Ok(None),
                Some(values) => values.first().map(Some).ok_or(()),
            }
        }
        let mut lists = Vec::with_capacity(6);
        if let Some(role) = first(&narrow.roles).ok()? {
            lists.push(list(&self.roles, role.as_str()));
        }
        if let Some(group) = first(&narrow.groups).ok()? {
            lists.push(list(&self.groups, group.as_str()));
        }
        match first(&narrow.scopes).ok()? {
            Some(ScopePattern::Exact(scope)) => {
                lists.push(list(&self.exact_scopes, scope.as_str()))
            }
            Some(ScopePattern::Under(base)) => lists.push(list(&self.scopes_under, base.as_str())),
            None => {}
        }
        if let Some(principal) = first(&narrow.principals).ok()? {
            lists.push(list(&self.principals, principal.as_str()));
        }
        if let Some(tier) = first(&narrow.tiers).ok()? {
            lists.push(list(&self.tiers, tier));
        }
        lists.push(&self.unkeyed);
        Some(Candidates::new(lists))
    }

    /// Bytes held by the index's lists and keys (heap only, hash-table overhead estimated as one
    /// key, one list header and one control byte per slot); for the benchmark's memory figure.
    pub fn estimated_bytes(&self) -> usize {
        fn map_bytes<K>(map: &HashMap<K, Vec<usize>>, key_bytes: impl Fn(&K) -> usize) -> usize {
            let slots =
                map.capacity() * (std::mem::size_of::<K>() + std::mem::size_of::<Vec<usize>>() + 1);
            let heap: usize = map
                .iter()
                .map(|(key, list)| key_bytes(key) + list.capacity() * std::mem::size_of::<usize>())
                .sum();
            slots + heap
        }
        let text = |key: &String| key.capacity();
        map_bytes(&self.roles, text)
            + map_bytes(&self.groups, text)
            + map_bytes(&self.exact_scopes, text)
            + map_bytes(&self.scopes_under, text)
            + map_bytes(&self.principals, text)
            + map_bytes(&self.tiers, |_| 0)
            + self.unkeyed.capacity() * std::mem::size_of::<usize>()
    }
}

/// A k-way merge of ascending position lists, each position once. `k` is small (one list per key
/// the request has, plus one per parent scope), so picking the smallest head by a scan is enough.
pub(crate) struct Candidates<'i> {
    lists: Vec<&'i [usize]>,
}

impl<'i> Candidates<'i> {
    fn new(mut lists: Vec<&'i [usize]>) -> Candidates<'i> {
        lists.retain(|list| !list.is_empty());
        Candidates { lists }
    }
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let smallest = self
            .lists
            .iter()
            .filter_map(|list| list.first())
            .min()
            .copied()?;
        for list in &mut self.lists {
            if let Some((head, rest)) = list.split_first()
                && *head == smallest
            {
                *list = rest;
            }
        }
        Some(smallest)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Candidates, PolicyIndex};
    use crate::rules::catalog::Tier;
    use crate::rules::matcher::{Matcher, ScopePattern};

    fn values<T: Clone + std::fmt::Debug + 'static>(
        pool: Vec<T>,
    ) -> impl Strategy<Value = Option<Vec<T>>> {
        let most = pool.len().min(3);
        proptest::option::weighted(0.4, proptest::sample::subsequence(pool, 0..=most))
    }

    fn text(pool: &[&str]) -> Vec<String> {
        pool.iter().map(ToString::to_string).collect()
    }

    fn matcher_strategy() -> impl Strategy<Value = Matcher> {
        (
            values(text(&["r1", "r2", "r3"])),
            values(vec![Tier::Critical, Tier::High]),
            values(text(&["g1", "g2"])),
            values(vec![
                ScopePattern::Exact("/".into()),
                ScopePattern::Under(String::new()),
                ScopePattern::Under("/s/1".into()),
                ScopePattern::Exact("/s/1".into()),
            ]),
            proptest::sample::subsequence(text(&["selfactivate", "selfextend"]), 0..=2),
            values(text(&["p1", "p2"])),
        )
            .prop_map(
                |(roles, tiers, groups, scopes, actions, principals)| Matcher {
                    roles,
                    tiers,
                    groups,
                    scopes,
                    actions,
                    principals,
                    ..Matcher::default()
                },
            )
    }

    proptest! {
        /// The unreachable-policy warning asks the index for the earlier policies that could cover
        /// a policy; it must find the same first coverer as comparing with every earlier one.
        #[test]
        fn the_index_finds_the_first_covering_policy_a_scan_finds(
            matchers in proptest::collection::vec(matcher_strategy(), 1..16)
        ) {
            let mut index = PolicyIndex::default();
            for (position, matcher) in matchers.iter().enumerate() {
                let scanned = matchers.iter().take(position).position(|earlier| earlier.covers(matcher));
                let indexed = match index.covering_candidates(matcher) {
                    Some(mut candidates) => candidates.find(|earlier| matchers[*earlier].covers(matcher)),
                    None => scanned,
                };
                prop_assert_eq!(indexed, scanned, "policy {}: {:?}", position, matcher);
                index.insert(position, matcher);
            }
        }
    }

    #[test]
    fn a_policy_without_keys_is_a_candidate_for_every_request() {
        let extend = Matcher {
            actions: vec!["selfextend".into()],
            ..Matcher::default()
        };
        let critical = Matcher {
            tiers: Some(vec![Tier::Critical]),
            ..Matcher::default()
        };
        let index = PolicyIndex::build([&extend, &critical]);
        let request = crate::checks::test_support::request();
        assert_eq!(index.candidates(&request).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn candidates_merge_lists_in_ascending_order_without_repeats() {
        let merged: Vec<usize> =
            Candidates::new(vec![&[1, 4, 9], &[], &[0, 4, 5], &[9, 12]]).collect();
        assert_eq!(merged, vec![0, 1, 4, 5, 9, 12]);
    }
}
