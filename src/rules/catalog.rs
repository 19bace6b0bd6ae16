//! PLACEHOLDER: the built-in Entra role catalog (being written by the catalog helper).

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Tier {
    Critical,
    High,
    Medium,
    Low,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinRole {
    pub id: &'static str,
    pub name: &'static str,
    pub tier: Tier,
}

pub fn by_id(_id: &str) -> Option<&'static BuiltinRole> {
    None
}

pub fn by_name(_name: &str) -> Option<&'static BuiltinRole> {
    None
}
