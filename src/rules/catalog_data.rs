//! The table of Microsoft Entra built-in roles: template id, display name and pimgate's tier.
//!
//! Sources (see `rules/CATALOG.md`):
//! - names and template ids: Microsoft Learn, "Microsoft Entra built-in roles"
//!   (<https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference>),
//!   `MicrosoftDocs/entra-docs` `docs/identity/role-based-access-control/permissions-reference.md`,
//!   "All roles" table, revision dated 2026-01-20. Roles added to that page after that revision
//!   (marked `added later` below) come from published diffs of the same page and were cross-checked
//!   against independent public role tables.
//! - tiers: Microsoft's PRIVILEGED label on the same page and "Privileged roles and permissions in
//!   Microsoft Entra ID" (`privileged-roles-permissions.md`), refined by what each role can escalate to.
//!
//! # Tiers
//!
//! The tier protects a role from *accidental* auto-approval: a rule that would auto-approve a
//! Critical role has to say so explicitly. The tiers are:
//!
//! - **Critical**: a holder can take over the tenant, or grant themselves (or an identity they control)
//!   any other role. That is: the roles that assign roles (Global Administrator, Privileged Role
//!   Administrator); the roles that can reset or replace the credentials of administrators or of
//!   service principals holding high privileges (Privileged Authentication Administrator, Partner Tier2
//!   Support, Application Administrator, Cloud Application Administrator, and User Administrator and
//!   Authentication Administrator, whose reach includes the owners of privileged apps and groups);
//!   the roles that control how *anyone* signs in (Security Administrator, Conditional Access
//!   Administrator, Authentication Policy Administrator, Hybrid Identity Administrator, Domain Name
//!   Administrator and External Identity Provider Administrator — federation lets the holder mint
//!   tokens for any user); Intune Administrator (runs code on administrators' devices and manages
//!   groups); Directory Synchronization Accounts (writes synchronized identities and password hashes);
//!   Lifecycle Workflows Administrator (workflows run with high privileges, e.g. temporary access passes).
//! - **High**: the other roles Microsoft labels PRIVILEGED and that can write (Helpdesk, Password,
//!   Directory Writers, Security Operator, Cloud Device Administrator, Application Developer...), and
//!   the roles that administer a whole workload or its data (Exchange, SharePoint, Teams, Power Platform,
//!   Dynamics 365, Fabric, Azure DevOps, Billing, compliance and backup/restore...).
//! - **Medium**: the other administrators, scoped to a feature or a product area.
//! - **Low**: readers and narrowly limited roles. Global Reader, Security Reader and the other readers
//!   carry Microsoft's PRIVILEGED label because what they read is sensitive, but they cannot change
//!   anything or escalate, so they are Low here.

use super::{BuiltinRole, Tier};
use Tier::{Critical, High, Low, Medium};

const fn role(id: &'static str, name: &'static str, tier: Tier) -> BuiltinRole {
    BuiltinRole { id, name, tier }
}

/// Every built-in role, in the order of Microsoft's "All roles" table (alphabetical).
pub(super) static ROLES: &[BuiltinRole] = &[
    role(
        "db506228-d27e-4b7d-95e5-295956d6615f",
        "Agent ID Administrator",
        High,
    ),
    role(
        "adb2368d-a9be-41b5-8667-d96778e081b0",
        "Agent ID Developer",
        Medium,
    ),
    role(
        "6b942400-691f-4bf0-9d12-d8a254a2baf5",
        "Agent Registry Administrator",
        Medium,
    ),
    role(
        "d2562ede-74db-457e-a7b6-544e236ebb61",
        "AI Administrator",
        High,
    ),
    // added later
    role("1fe13547-53f6-408d-ac04-7f8eed167b38", "AI Reader", Low),
    role(
        "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
        "Application Administrator",
        Critical,
    ),
    role(
        "cf1c38e5-3621-4004-a7cb-879624dced7c",
        "Application Developer",
        High,
    ),
    role(
        "9c6df0f2-1e7c-4dc3-b195-66dfbd24aa8f",
        "Attack Payload Author",
        Low,
    ),
    role(
        "c430b396-e693-46cc-96f3-db01bf8bb62a",
        "Attack Simulation Administrator",
        Medium,
    ),
    role(
        "58a13ea3-c632-46ae-9ee0-9c0d43cd7f3d",
        "Attribute Assignment Administrator",
        Medium,
    ),
    role(
        "ffd52fa5-98dc-465c-991d-fc073eb59f8f",
        "Attribute Assignment Reader",
        Low,
    ),
    role(
        "8424c6f0-a189-499e-bbd0-26c1753c96d4",
        "Attribute Definition Administrator",
        Medium,
    ),
    role(
        "1d336d2c-4ae8-42ef-9711-b3604ce3fc2c",
        "Attribute Definition Reader",
        Low,
    ),
    role(
        "5b784334-f94b-471a-a387-e7219fc49ca2",
        "Attribute Log Administrator",
        Medium,
    ),
    role(
        "9c99539d-8186-4804-835f-fd51ef9e2dcd",
        "Attribute Log Reader",
        Low,
    ),
    role(
        "ecb2c6bf-0ab6-418e-bd87-7986f8d63bbe",
        "Attribute Provisioning Administrator",
        High,
    ),
    role(
        "422218e4-db15-4ef9-bbe0-8afb41546d79",
        "Attribute Provisioning Reader",
        Low,
    ),
    role(
        "c4e39bd9-1100-46d3-8c65-fb160da0071f",
        "Authentication Administrator",
        Critical,
    ),
    role(
        "25a516ed-2fa0-40ea-a2d0-12923a21473a",
        "Authentication Extensibility Administrator",
        High,
    ),
    // added later
    role(
        "0b00bede-4072-4d22-b441-e7df02a1ef63",
        "Authentication Extensibility Password Administrator",
        High,
    ),
    role(
        "0526716b-113d-4c15-b2c8-68e3c22b9f80",
        "Authentication Policy Administrator",
        Critical,
    ),
    role(
        "e3973bdf-4987-49ae-837a-ba8e231c7286",
        "Azure DevOps Administrator",
        High,
    ),
    role(
        "7495fdc4-34c4-4d15-a289-98788ce399fd",
        "Azure Information Protection Administrator",
        High,
    ),
    role(
        "aaf43236-0c0d-4d5f-883a-6955382ac081",
        "B2C IEF Keyset Administrator",
        High,
    ),
    role(
        "3edaf663-341e-4475-9f94-5c398ef6c070",
        "B2C IEF Policy Administrator",
        Medium,
    ),
    role(
        "b0f54661-2d74-4c50-afa3-1ec803f12efe",
        "Billing Administrator",
        High,
    ),
    role(
        "892c5842-a9a6-463a-8041-72aa08ca3cf6",
        "Cloud App Security Administrator",
        High,
    ),
    role(
        "158c047a-c907-4556-b7ef-446551a6b5f7",
        "Cloud Application Administrator",
        Critical,
    ),
    role(
        "7698a772-787b-4ac8-901f-60d6b08affd2",
        "Cloud Device Administrator",
        High,
    ),
    role(
        "17315797-102d-40b4-93e0-432062caca18",
        "Compliance Administrator",
        High,
    ),
    role(
        "e6d1a23a-da11-4be4-9570-befc86d067a7",
        "Compliance Data Administrator",
        High,
    ),
    role(
        "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9",
        "Conditional Access Administrator",
        Critical,
    ),
    // added later; approves partners' (GDAP) admin relationships, which grant them roles here
    role(
        "fc8ad4e2-40e4-4724-8317-bcda7503ecbf",
        "Customer Delegated Admin Relationship Administrator",
        High,
    ),
    role(
        "5c4f9dcd-47dc-4cf7-8c9a-9e4207cbfc91",
        "Customer Lockbox Access Approver",
        Medium,
    ),
    role(
        "38a96431-2bdf-4b4c-8b6e-5d3d8abac1a4",
        "Desktop Analytics Administrator",
        Medium,
    ),
    role(
        "88d8e3e3-8f55-4a1e-953a-9b9898b8876b",
        "Directory Readers",
        Low,
    ),
    role(
        "d29b2b05-8046-44ba-8758-1e26182fcf32",
        "Directory Synchronization Accounts",
        Critical,
    ),
    role(
        "9360feb5-f418-4baa-8175-e2a00bac4301",
        "Directory Writers",
        High,
    ),
    role(
        "8329153b-31d0-4727-b945-745eb3bc5f31",
        "Domain Name Administrator",
        Critical,
    ),
    role(
        "e93e3737-fa85-474a-aee4-7d3fb86510f3",
        "Dragon Administrator",
        Medium,
    ),
    role(
        "44367163-eba1-44c3-98af-f5787879f96a",
        "Dynamics 365 Administrator",
        High,
    ),
    role(
        "963797fb-eb3b-4cde-8ce3-5878b3f32a3f",
        "Dynamics 365 Business Central Administrator",
        Medium,
    ),
    role(
        "3f1acade-1e04-4fbc-9b69-f0302cd84aef",
        "Edge Administrator",
        Medium,
    ),
    // added later; can restore directory objects to an earlier state
    role(
        "b6a27b2b-f905-4b2e-81b5-0d90e0ef1fdb",
        "Entra Backup Administrator",
        High,
    ),
    // added later
    role(
        "f42252d9-5400-4d7b-b9ef-cc582dbb8577",
        "Entra Backup Reader",
        Low,
    ),
    role(
        "29232cdf-9323-42fd-ade2-1d097af3e4de",
        "Exchange Administrator",
        High,
    ),
    role(
        "49eb8f75-97e9-4e37-9b2b-6c3ebfcffa31",
        "Exchange Backup Administrator",
        High,
    ),
    role(
        "31392ffb-586c-42d1-9346-e59415a2cc4e",
        "Exchange Recipient Administrator",
        Medium,
    ),
    role(
        "dd13091a-6207-4fc0-82ba-3641e056ab95",
        "Extended Directory User Administrator",
        Medium,
    ),
    role(
        "6e591065-9bad-43ed-90f3-e9424366d2f0",
        "External ID User Flow Administrator",
        Medium,
    ),
    role(
        "0f971eea-41eb-4569-a71e-57bb8a3eff1e",
        "External ID User Flow Attribute Administrator",
        Medium,
    ),
    role(
        "be2f45a1-457d-42af-a067-6ec1fa63bc45",
        "External Identity Provider Administrator",
        Critical,
    ),
    role(
        "a9ea8996-122f-4c74-9520-8edcd192826c",
        "Fabric Administrator",
        High,
    ),
    role(
        "62e90394-69f5-4237-9190-012177145e10",
        "Global Administrator",
        Critical,
    ),
    role("f2ef992c-3afb-46b9-b7cf-a126ee74c451", "Global Reader", Low),
    role(
        "ac434307-12b9-4fa1-a708-88bf58caabc1",
        "Global Secure Access Administrator",
        High,
    ),
    role(
        "843318fb-79a6-4168-9e6f-aa9a07481cc4",
        "Global Secure Access Log Reader",
        Low,
    ),
    role(
        "fdd7a751-b60b-444a-984c-02652fe8fa1c",
        "Groups Administrator",
        High,
    ),
    role("95e79109-95c0-4d8e-aee3-d01accf2d47b", "Guest Inviter", Low),
    role(
        "729827e3-9c14-49f7-bb1b-9608f156bbb8",
        "Helpdesk Administrator",
        High,
    ),
    role(
        "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2",
        "Hybrid Identity Administrator",
        Critical,
    ),
    role(
        "45d8d3c5-c802-45c6-b32a-1d70b5e1e86e",
        "Identity Governance Administrator",
        High,
    ),
    role(
        "eb1f4a8d-243a-41f0-9fbd-c7cdf6c5ef7c",
        "Insights Administrator",
        Medium,
    ),
    role(
        "25df335f-86eb-4119-b717-0ff02de207e9",
        "Insights Analyst",
        Low,
    ),
    role(
        "31e939ad-9672-4796-9c2e-873181342d2d",
        "Insights Business Leader",
        Low,
    ),
    role(
        "3a2c62db-5318-420d-8d74-23affee5d9d5",
        "Intune Administrator",
        Critical,
    ),
    role(
        "2ea5ce4c-b2d8-4668-bd81-3680bd2d227a",
        "IoT Device Administrator",
        Medium,
    ),
    role(
        "74ef975b-6605-40af-a5d2-b9539d836353",
        "Kaizala Administrator",
        Medium,
    ),
    role(
        "b5a8dcf3-09d5-43a9-a639-8e29ef291470",
        "Knowledge Administrator",
        Medium,
    ),
    role(
        "744ec460-397e-42ad-a462-8b3f9747a02c",
        "Knowledge Manager",
        Low,
    ),
    role(
        "4d6ac14f-3453-41d0-bef9-a3e0c569773a",
        "License Administrator",
        Medium,
    ),
    role(
        "59d46f88-662b-457b-bceb-5c3809e5908f",
        "Lifecycle Workflows Administrator",
        Critical,
    ),
    role(
        "ac16e43d-7b2d-40e0-ac05-243ff356ab5b",
        "Message Center Privacy Reader",
        Low,
    ),
    role(
        "790c1fb9-7f7d-4f88-86a1-ef1f95c05c1b",
        "Message Center Reader",
        Low,
    ),
    role(
        "1707125e-0aa2-4d4d-8655-a7c786c76a25",
        "Microsoft 365 Backup Administrator",
        High,
    ),
    role(
        "8c8b803f-96e1-4129-9349-20738d9f9652",
        "Microsoft 365 Migration Administrator",
        Medium,
    ),
    role(
        "00cf5c54-4693-4f59-a0ac-ab79ef0a974d",
        "Microsoft 365 Support Engineer",
        Medium,
    ),
    role(
        "9f06204d-73c1-4d4c-880a-6edb90606fd8",
        "Microsoft Entra Joined Device Local Administrator",
        Medium,
    ),
    role(
        "ee67aa9c-e510-4759-b906-227085a7fd4d",
        "Microsoft Graph Data Connect Administrator",
        Medium,
    ),
    role(
        "1501b917-7653-4ff9-a4b5-203eaf33784f",
        "Microsoft Hardware Warranty Administrator",
        Medium,
    ),
    role(
        "281fe777-fb20-4fbb-b7a3-ccebce5b0d96",
        "Microsoft Hardware Warranty Specialist",
        Low,
    ),
    // not in the "All roles" table: listed under "Roles not shown in the portal" (formerly Modern
    // Commerce User, with this id in the table of earlier revisions)
    role(
        "d24aef57-1500-4070-84db-2666f29cf966",
        "Modern Commerce Administrator",
        Medium,
    ),
    role(
        "d37c8bed-0711-4417-ba38-b4abe66ce4c2",
        "Network Administrator",
        Medium,
    ),
    role(
        "2b745bdf-0803-4d80-aa65-822c4493daac",
        "Office Apps Administrator",
        Medium,
    ),
    role(
        "92ed04bf-c94a-4b82-9729-b799a7a4c178",
        "Organizational Branding Administrator",
        Medium,
    ),
    role(
        "9d70768a-0cbc-4b4c-aea3-2e124b2477f4",
        "Organizational Data Source Administrator",
        Medium,
    ),
    role(
        "e48398e2-f4bb-4074-8f31-4586725e205b",
        "Organizational Messages Approver",
        Low,
    ),
    role(
        "507f53e4-4e52-4077-abd3-d2e1558b6ea2",
        "Organizational Messages Writer",
        Low,
    ),
    role(
        "4ba39ca4-527c-499a-b93d-d9b492c50246",
        "Partner Tier1 Support",
        High,
    ),
    role(
        "e00e864a-17c5-4a4b-9c06-f5b95a8d5bd8",
        "Partner Tier2 Support",
        Critical,
    ),
    role(
        "966707d0-3269-4727-9be2-8c3a10f19b9d",
        "Password Administrator",
        High,
    ),
    role(
        "024906de-61e5-49c8-8572-40335f1e0e10",
        "People Administrator",
        Medium,
    ),
    role(
        "af78dc32-cf4d-46f9-ba4e-4428526346b5",
        "Permissions Management Administrator",
        High,
    ),
    role(
        "78b0ccd1-afc2-4f92-9116-b41aedd09592",
        "Places Administrator",
        Medium,
    ),
    role(
        "11648597-926c-4cf3-9c36-bcebb0ba8dcc",
        "Power Platform Administrator",
        High,
    ),
    role(
        "644ef478-e28f-4e28-b9dc-3fdde9aa0b1f",
        "Printer Administrator",
        Medium,
    ),
    role(
        "e8cef6f1-e4bd-4ea8-bc07-4b8d950f4477",
        "Printer Technician",
        Low,
    ),
    role(
        "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
        "Privileged Authentication Administrator",
        Critical,
    ),
    role(
        "e8611ab8-c189-46e8-94e1-60213ab1f814",
        "Privileged Role Administrator",
        Critical,
    ),
    role(
        "4a5d8f65-41da-4de4-8968-e035b65339cf",
        "Reports Reader",
        Low,
    ),
    role(
        "0964bb5e-9bdb-4d7b-ac29-58e794862a40",
        "Search Administrator",
        Medium,
    ),
    role("8835291a-918c-4fd7-a9ce-faa49f0cf7d9", "Search Editor", Low),
    role(
        "194ae4cb-b126-40b2-bd5b-6091b380977d",
        "Security Administrator",
        Critical,
    ),
    role(
        "5f2222b1-57c3-48ba-8ad5-d4759f1fde6f",
        "Security Operator",
        High,
    ),
    role(
        "5d6b6bb7-de71-4623-b4af-96380a352509",
        "Security Reader",
        Low,
    ),
    role(
        "f023fd81-a637-4b56-95fd-791ac0226033",
        "Service Support Administrator",
        Medium,
    ),
    role(
        "f28a1f50-f6e7-4571-818b-6a12f2af6b6c",
        "SharePoint Administrator",
        High,
    ),
    role(
        "99009c4a-3b3f-4957-82a9-9d35e12db77e",
        "SharePoint Advanced Management Administrator",
        Medium,
    ),
    role(
        "9d3e04ba-3ee4-4d1b-a3a7-9aef423a09be",
        "SharePoint Backup Administrator",
        High,
    ),
    role(
        "1a7d78b6-429f-476b-b8eb-35fb715fffd4",
        "SharePoint Embedded Administrator",
        Medium,
    ),
    role(
        "75941009-915a-4869-abe7-691bff18279e",
        "Skype for Business Administrator",
        Medium,
    ),
    role(
        "69091246-20e8-4a56-aa4d-066075b2a7a8",
        "Teams Administrator",
        High,
    ),
    role(
        "baf37b3a-610e-45da-9e62-d9d1e5e8914b",
        "Teams Communications Administrator",
        Medium,
    ),
    role(
        "f70938a0-fc10-4177-9e90-2178f8765737",
        "Teams Communications Support Engineer",
        Low,
    ),
    role(
        "fcf91098-03e3-41a9-b5ba-6f0ec8188a12",
        "Teams Communications Support Specialist",
        Low,
    ),
    role(
        "3d762c5a-1b6c-493f-843e-55a3b42923d4",
        "Teams Devices Administrator",
        Medium,
    ),
    // added later
    role(
        "2fe872fb-daa8-4afc-8f6c-53c4565cfef4",
        "Teams External Collaboration Administrator",
        Medium,
    ),
    role("1076ac91-f3d9-41a7-a339-dcdf5f480acc", "Teams Reader", Low),
    role(
        "aa38014f-0993-46e9-9b45-30501a20909d",
        "Teams Telephony Administrator",
        Medium,
    ),
    role(
        "112ca1a2-15ad-4102-995e-45b0bc479a6a",
        "Tenant Creator",
        Medium,
    ),
    role(
        "75934031-6c7e-415a-99d7-48dbd49e875e",
        "Usage Summary Reports Reader",
        Low,
    ),
    role(
        "fe930be7-5e62-47db-91af-98c3a49a38b1",
        "User Administrator",
        Critical,
    ),
    role(
        "27460883-1df1-4691-b032-3b79643e5e63",
        "User Experience Success Manager",
        Low,
    ),
    role(
        "e300d9e7-4a2b-4295-9eff-f1c78b36cc98",
        "Virtual Visits Administrator",
        Medium,
    ),
    role(
        "0ec3f692-38d6-4d14-9e69-0377ca7797ad",
        "Viva Glint Tenant Administrator",
        Medium,
    ),
    role(
        "92b086b3-e367-4ef2-b869-1de128fb986e",
        "Viva Goals Administrator",
        Medium,
    ),
    role(
        "87761b17-1ed2-4af3-9acd-92a150038160",
        "Viva Pulse Administrator",
        Medium,
    ),
    role(
        "11451d60-acb2-45eb-a7d6-43d0f0125c13",
        "Windows 365 Administrator",
        High,
    ),
    role(
        "32696413-001a-46ae-978c-ce0f6b3620d2",
        "Windows Update Deployment Administrator",
        Medium,
    ),
    role(
        "810a2642-a034-447f-a5e8-41beaa378541",
        "Yammer Administrator",
        Medium,
    ),
];

/// Names operators may still have in rule files: earlier display names of the same role template
/// (the template id never changes on a rename), each mapped to the id it names.
pub(super) static FORMER_NAMES: &[(&str, &str)] = &[
    // PowerShell (MSOnline, AzureAD modules) display name of Global Administrator.
    (
        "Company Administrator",
        "62e90394-69f5-4237-9190-012177145e10",
    ),
    // permissions-reference.md before the 2025 rename.
    (
        "Azure AD Joined Device Local Administrator",
        "9f06204d-73c1-4d4c-880a-6edb90606fd8",
    ),
    (
        "Power BI Administrator",
        "a9ea8996-122f-4c74-9520-8edcd192826c",
    ),
    (
        "Modern Commerce User",
        "d24aef57-1500-4070-84db-2666f29cf966",
    ),
    // API names listed under "Roles not shown in the portal".
    (
        "Partner Tier 1 Support",
        "4ba39ca4-527c-499a-b93d-d9b492c50246",
    ),
    (
        "Partner Tier 2 Support",
        "e00e864a-17c5-4a4b-9c06-f5b95a8d5bd8",
    ),
];
