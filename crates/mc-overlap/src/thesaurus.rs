//! Words of software work that mean the same thing ("purge" and "delete", "dormant" and
//! "inactive", "throttle" and "rate-limit"), and phrasal verbs written as one word ("roll out",
//! "sign up"). Before a text is embedded for the bundled model, each such word is replaced by
//! the first word of its group ([`canonical`]), so that a rewrite in other words reaches the
//! model in the same words: the small bundled model scores "Relaunch dead queue readers" near
//! zero against "Restart crashed consumers", but not once both say "restart" and "consumer".
//!
//! Groups hold true synonyms only. Two words that name different objects of one kind (staging
//! and production, create and delete, weekly and monthly) never share a group: a swap of them is
//! what makes two texts *different* work, and it must stay visible. Words with a common second
//! sense that would turn a text into nonsense ("client" of an API, "load" of a load test,
//! "cover" of test coverage) are left out; a word in two groups ("dead" link, "dead" consumer)
//! is left as written.
//!
//! Lexical overlap does not use the groups: matching synonyms there makes a rewrite look like
//! "the same sentence about another object", and in cross-validation that cost more than it
//! gained.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::text::{fold, map_words};

/// Changes whenever [`GROUPS`] or [`PHRASES`] change (a test pins their hash): the vectors of
/// canonical texts are stored under a model id that carries it, so a new table re-embeds them.
pub const REVISION: &str = "thesaurus4";

/// Synonym groups, one per line, words separated by spaces. Words are folded like any token
/// (lower-cased, lightly stemmed, abbreviations expanded) when the table is built.
const GROUPS: &[&str] = &[
    // acting on running things
    "restart relaunch reboot respawn",
    "crash die dead panic segfault",
    "hang hung freeze frozen stuck unresponsive stall deadlock",
    "stop halt shutdown",
    "start launch boot spawn",
    "pause suspend",
    "mute silence",
    // removing and clearing
    "delete purge erase wipe prune drop teardown destroy discard",
    "purge flush invalidate evict",
    "cleanup tidy declutter",
    "hide hidden conceal suppress obscure",
    "decommission retire sunset",
    "deduplicate dedupe dedup deduplication",
    "rollback revert",
    "disable deactivate",
    "enable activate",
    // making and changing
    "add introduce implement",
    "upgrade bump",
    "increase grow enlarge boost",
    "decrease reduce shrink minimize minimise smaller trim",
    "refactor restructure rework rewrite reorganize reorganise overhaul rearchitect re-architect",
    "simplify streamline",
    "improve improvement enhance enhancement",
    "adjust tweak",
    "merge consolidate combine",
    "batch bulk",
    "cache memoize memoization",
    "prefill prepopulate pre-populate pre-fill",
    "sync synchronize synchronization synchronisation",
    "async asynchronous asynchronously",
    "initialize init initialization initialisation",
    "normalize normalization normalisation",
    "customize customization customisation",
    "optimization optimisation",
    "prioritize prioritization prioritisation",
    "categorize categorization categorisation classify classification",
    "analyze analyse",
    "containerize dockerize",
    "mock stub",
    "handoff handover",
    "fix repair",
    "cancel abort cancelled cancellation",
    "explain describe clarify",
    "split decompose separate",
    "rotate renew regenerate",
    "refresh reload",
    "retry reattempt redeliver resend",
    "send deliver dispatch",
    "schedule cron periodic recurring",
    "automatic automatically auto automate automated automation",
    "reproduce repro",
    "debug diagnose troubleshoot",
    "prototype poc spike",
    "require enforce mandate mandatory compulsory",
    "block deny forbid prevent disallow refuse prohibit reject ban",
    "allow permit",
    "deployment release ship launch",
    "gate gated guard",
    "save persist",
    "read fetch retrieve",
    "import ingest",
    "parse decode deserialize deserialise deserialization deserialisation unmarshal",
    "serialize serialise serialization serialisation encode marshal",
    "validate validation verify sanitize sanitise",
    "encrypt encryption",
    "compress compression",
    "monitor track observe instrument observability",
    "notify notification alert",
    "search find lookup",
    "filter facet narrow",
    "sort rank",
    "highlight emphasize emphasise",
    "translate translation localization localisation internationalization internationalisation locale",
    "generate generation",
    "register registration signup enrol enroll",
    "login signin logon",
    "logout signout logoff",
    "reset recover forgot forgotten",
    "restore recover recovery rehydrate",
    "document documentation guide handbook readme",
    "tutorial walkthrough guide howto",
    "expire expiry expiration ttl lifetime",
    "timeout deadline",
    // qualities and states
    "broken dead failing faulty defunct",
    "inactive dormant idle stale unused abandoned orphaned",
    "deprecated legacy obsolete outdated",
    "slow sluggish laggy fast faster quicker speed accelerate optimize optimise performance",
    "flaky intermittent nondeterministic non-deterministic unstable sporadic randomly occasionally sometimes",
    "duplicate duplicated double twice repeated dupe",
    "missing absent lost disappear vanish",
    "wrong incorrect inaccurate invalid bad",
    "discrepancy mismatch inconsistency",
    "large big huge massive oversized bloated heavy bigger larger",
    "clearer readable understandable helpful descriptive friendly",
    "beta experimental prerelease pre-release",
    "spike surge burst",
    "typo misspelling misspelled misspelt",
    // one word in two spellings
    "color colour",
    "gray grey",
    "behavior behaviour",
    "license licence",
    "favorite favourite",
    "center centre",
    "artifact artefact",
    "inquiry enquiry",
    "authorization authorisation",
    // things
    "customer buyer shopper",
    "user member people person",
    "admin administrator superuser",
    "permission privilege entitlement",
    "credential secret",
    "password passphrase",
    "message wording feedback",
    "term keyword word",
    "snippet excerpt",
    "banner ribbon notice announcement",
    "toast snackbar",
    "modal dialog dialogue popup overlay",
    "dropdown picker combobox",
    "flag toggle feature-flag",
    "checkbox toggle",
    "shortcut hotkey keybinding",
    "page screen",
    "settings preferences prefs options configuration",
    "dashboard portal",
    "navbar navigation nav",
    "heading title headline",
    "field attribute property",
    "id identifier",
    "comment remark annotation",
    "chart graph plot visualization visualisation diagram",
    "report summary digest recap",
    "date timestamp datetime",
    "image photo",
    "video clip",
    "website site homepage",
    "invoice bill receipt",
    "billing invoicing",
    "payment charge",
    "subscription membership",
    "price pricing cost fee",
    "discount coupon promo voucher",
    "cart basket",
    "shipping shipment fulfilment fulfillment",
    "order purchase",
    "consumer reader subscriber listener",
    "producer publisher emitter",
    "job task",
    "pipeline workflow",
    "queue backlog",
    "replica follower standby",
    "primary leader master",
    "main master trunk",
    "server host instance vm",
    "container pod",
    "certificate cert",
    "endpoint route",
    "response reply",
    "payload body",
    "stacktrace traceback backtrace",
    "glitch defect problem",
    "outage downtime incident disruption",
    "usage consumption utilization utilisation",
    "metric stat statistic measurement",
    "sum total",
    "memory ram heap",
    "database datastore",
    "quota cap allowance",
    "throttle rate-limit ratelimit",
    "pull-request merge-request mr",
    "owner maintainer codeowner",
    "template boilerplate scaffold starter",
    "lint linter",
    "accessibility a11y accessible aria",
    "accent diacritic",
    "vulnerability vuln cve",
    "onboarding welcome",
    "organization organisation org",
    "email e-mail mail",
    "allowlist whitelist safelist",
    "denylist blocklist blacklist",
    "directory folder dir",
    "library lib",
    "function func fn",
    "parameter param argument arg",
    "variable var",
    "button btn",
    "sidebar sidenav side-nav",
    "font typeface",
    "autocomplete autosuggest autocompletion typeahead type-ahead",
    "changelog release-notes",
    "on-call oncall",
    "chargeback dispute",
    "payout disbursement",
    "churn attrition",
    "survey questionnaire",
    "postcode zipcode postal-code",
    "firstname forename",
    "lastname surname",
    // abbreviations the tokens fold (`k8s`, `prod`), written out for the model
    "kubernetes k8s kube",
    "production prod",
    "staging stg",
    "postgres postgresql pg",
    "mongodb mongo",
    "google-cloud gcp",
    "github gh",
    "infrastructure infra",
];

/// Phrasal verbs and split compounds read as one word (lower-case, a single space between words).
const PHRASES: &[(&str, &str)] = &[
    ("roll out", "rollout"),
    ("rolled out", "rollout"),
    ("rolling out", "rollout"),
    ("roll-out", "rollout"),
    ("roll back", "rollback"),
    ("rolled back", "rollback"),
    ("roll-back", "rollback"),
    ("sign up", "signup"),
    ("signed up", "signup"),
    ("signing up", "signup"),
    ("sign-up", "signup"),
    ("sign in", "signin"),
    ("signed in", "signin"),
    ("sign-in", "signin"),
    ("log in", "login"),
    ("logged in", "login"),
    ("log-in", "login"),
    ("log out", "logout"),
    ("logged out", "logout"),
    ("log-out", "logout"),
    ("sign out", "signout"),
    ("sign-out", "signout"),
    ("turn on", "enable"),
    ("turned on", "enable"),
    ("switch on", "enable"),
    ("turn off", "disable"),
    ("turned off", "disable"),
    ("switch off", "disable"),
    ("shut down", "shutdown"),
    ("time out", "timeout"),
    ("times out", "timeout"),
    ("timed out", "timeout"),
    ("back up", "backup"),
    ("look up", "lookup"),
    ("speed up", "accelerate"),
    ("don't show", "hide"),
    ("don't display", "hide"),
    ("do not show", "hide"),
    ("do not display", "hide"),
    ("stop showing", "hide"),
    ("stop displaying", "hide"),
    ("rate limit", "rate-limit"),
    ("rate limits", "rate-limit"),
    ("rate limiting", "rate-limit"),
    ("rate limited", "rate-limit"),
    ("rate-limits", "rate-limit"),
    ("rate-limiting", "rate-limit"),
    ("rate-limited", "rate-limit"),
    ("feature flag", "feature-flag"),
    ("feature flags", "feature-flag"),
    ("feature toggle", "feature-flag"),
    ("feature toggles", "feature-flag"),
    ("pull request", "pull-request"),
    ("pull requests", "pull-request"),
    ("merge request", "merge-request"),
    ("merge requests", "merge-request"),
    ("stack trace", "stacktrace"),
    ("stack traces", "stacktrace"),
    ("audit trail", "auditlog"),
    ("audit log", "auditlog"),
    ("audit logs", "auditlog"),
    ("tear down", "teardown"),
    ("tears down", "teardown"),
    ("torn down", "teardown"),
    ("tearing down", "teardown"),
    ("health check", "healthcheck"),
    ("health checks", "healthcheck"),
    ("pop up", "popup"),
    ("pop-up", "popup"),
    ("log off", "logoff"),
    ("set up", "setup"),
    ("setting up", "setup"),
    ("set-up", "setup"),
    ("clean up", "cleanup"),
    ("cleaning up", "cleanup"),
    ("clean-up", "cleanup"),
    ("kick off", "start"),
    ("kicked off", "start"),
    ("get rid of", "delete"),
    ("phase out", "decommission"),
    ("phased out", "decommission"),
    ("break up", "split"),
    ("break apart", "split"),
    ("fall back", "fallback"),
    ("fall-back", "fallback"),
    ("back off", "backoff"),
    ("back-off", "backoff"),
    ("fail over", "failover"),
    ("fail-over", "failover"),
    ("hand off", "handoff"),
    ("hand-off", "handoff"),
    ("hand over", "handover"),
    ("out of date", "outdated"),
    ("out-of-date", "outdated"),
    ("hard coded", "hardcoded"),
    ("hard-coded", "hardcoded"),
    ("how-to", "howto"),
    ("3rd party", "third-party"),
    ("3rd-party", "third-party"),
    ("env var", "environment-variable"),
    ("env vars", "environment-variables"),
    ("environment variable", "environment-variable"),
    ("environment variables", "environment-variables"),
    ("white list", "whitelist"),
    ("black list", "blacklist"),
    ("allow list", "allowlist"),
    ("deny list", "denylist"),
    ("block list", "blocklist"),
    ("drop down", "dropdown"),
    ("drop downs", "dropdown"),
    ("drop-down", "dropdown"),
    ("check box", "checkbox"),
    ("check boxes", "checkbox"),
    ("dialog box", "dialog"),
    ("dialogue box", "dialog"),
    ("nav bar", "navbar"),
    ("navigation bar", "navbar"),
    ("side bar", "sidebar"),
    ("keyboard shortcut", "shortcut"),
    ("keyboard shortcuts", "shortcut"),
    ("web hook", "webhook"),
    ("web hooks", "webhook"),
    ("web site", "website"),
    ("home page", "homepage"),
    ("dead lock", "deadlock"),
    ("code owner", "codeowner"),
    ("code owners", "codeowner"),
    ("release notes", "release-notes"),
    ("release note", "release-notes"),
    ("change log", "changelog"),
    ("penetration test", "pentest"),
    ("penetration testing", "pentest"),
    ("pen test", "pentest"),
    ("zip code", "zipcode"),
    ("postal code", "postal-code"),
    ("first name", "firstname"),
    ("given name", "firstname"),
    ("last name", "lastname"),
    ("family name", "lastname"),
    ("dark mode", "dark-mode"),
    ("dark theme", "dark-mode"),
    ("light mode", "light-mode"),
    ("light theme", "light-mode"),
    ("splash screen", "splash-screen"),
    ("launch screen", "splash-screen"),
    // a compound whose words would otherwise read as other synonyms
    ("screen reader", "screen-reader"),
    ("screen readers", "screen-readers"),
    ("home screen", "home-screen"),
    ("release candidate", "release-candidate"),
    ("read receipt", "read-receipt"),
    ("spring boot", "spring-boot"),
    ("double click", "double-click"),
    ("date picker", "datepicker"),
    ("color picker", "color-picker"),
    // "WIP" would otherwise read as "wipe", so as "delete" (a final `e` is dropped before lookup)
    ("wip", "work-in-progress"),
    ("work in progress", "work-in-progress"),
];

/// What a folded word is looked up by: the light stemmer leaves "profile" whole but cuts
/// "profiles" to "profil", so a final `e` is dropped on both sides.
fn key(norm: &str) -> &str {
    norm.strip_suffix('e').unwrap_or(norm)
}

/// For each folded word (by [`key`]), the groups it belongs to.
fn senses() -> &'static HashMap<String, Vec<u16>> {
    static MAP: OnceLock<HashMap<String, Vec<u16>>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map: HashMap<String, Vec<u16>> = HashMap::new();
        for (g, line) in GROUPS.iter().enumerate() {
            let g = u16::try_from(g).unwrap_or(u16::MAX);
            for word in line.split(' ').filter(|w| !w.is_empty()) {
                let entry = map.entry(key(&fold(word)).to_owned()).or_default();
                if !entry.contains(&g) {
                    entry.push(g);
                }
            }
        }
        map
    })
}

/// The word that stands for `word`: the first word of its group, if it belongs to exactly one.
/// Two words with the same head mean the same.
pub fn head(word: &str) -> Option<&'static str> {
    match senses().get(key(&fold(word))).map(Vec::as_slice) {
        Some([g]) => GROUPS.get(usize::from(*g)).and_then(|line| line.split(' ').next()),
        _ => None,
    }
}

fn phrase_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'\'')
}

/// [`PHRASES`] by their first word (the run of word bytes they begin with), in table order.
fn phrases_by_first_word() -> &'static HashMap<&'static str, Vec<(&'static str, &'static str)>> {
    static MAP: OnceLock<HashMap<&'static str, Vec<(&'static str, &'static str)>>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map: HashMap<&'static str, Vec<(&'static str, &'static str)>> = HashMap::new();
        for &(phrase, joined) in PHRASES {
            let end = phrase.bytes().position(|b| !phrase_byte(b)).unwrap_or(phrase.len());
            map.entry(&phrase[..end]).or_default().push((phrase, joined));
        }
        map
    })
}

/// The text with known phrases joined into one word ("Roll out the new page" becomes "rollout
/// the new page"). Case is kept outside the phrases; matching ignores case and needs whole words.
/// Only the phrases that begin with the word at hand are tried: a 32 KiB body is joined in 0.5 ms,
/// against 6.6 ms when each of the 156 phrases was tried at every word (`examples/canonical_bench.rs`).
pub fn join_phrases(text: &str) -> String {
    // phrases are ASCII: an ASCII lower case keeps every byte offset of `text`
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let in_word = |i: usize| bytes.get(i).is_some_and(|b| phrase_byte(*b));
    let by_first_word = phrases_by_first_word();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'outer: while i < text.len() {
        if i == 0 || !in_word(i - 1) {
            let mut word_end = i;
            while in_word(word_end) {
                word_end += 1;
            }
            for (phrase, joined) in by_first_word.get(&lower[i..word_end]).into_iter().flatten() {
                let end = i + phrase.len();
                if lower[i..].starts_with(phrase) && !in_word(end) {
                    out.push_str(joined);
                    i = end;
                    continue 'outer;
                }
            }
        }
        let ch = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch]);
        i += ch;
    }
    out
}

/// The text with phrases joined and every word of exactly one group replaced by the first word
/// of that group: "Relaunch dead queue readers" becomes "restart dead queue consumer". Words of
/// several groups, and everything that is not a word, stay as written.
pub fn canonical(text: &str) -> String {
    map_words(
        &join_phrases(text),
        |c| c.is_alphanumeric() || c == '-' || c == '\'',
        |word, out| {
            out.push_str(head(word).unwrap_or(word));
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_head(a: &str, b: &str) -> bool {
        head(a).is_some() && head(a) == head(b)
    }

    #[test]
    fn synonyms_share_a_head_and_swaps_do_not() {
        assert!(same_head("purge", "delete") || head("purge").is_none(), "purge has two senses");
        assert!(same_head("erase", "delete"));
        assert!(same_head("dormant", "inactive"));
        assert!(same_head("relaunched", "restart"));
        assert!(same_head("profiles", "account") || head("profiles").is_none());
        assert_eq!(head("dead"), None, "two senses: left as written");
        assert!(!same_head("create", "delete"));
        assert!(!same_head("increase", "decrease"));
        assert!(!same_head("staging", "production"));
        assert!(!same_head("import", "export"));
        assert_eq!(head("unknownword"), None);
    }

    #[test]
    fn new_synonyms_share_a_head_and_swaps_do_not() {
        assert!(same_head("whitelisted", "allowlist"));
        assert!(same_head("blacklist", "denylist"));
        assert!(!same_head("allowlist", "denylist"));
        assert!(same_head("colours", "color"));
        assert!(same_head("behaviour", "behavior"));
        assert!(same_head("reverted", "rollback"));
        assert!(same_head("memoize", "caching"));
        assert!(same_head("deduped", "deduplicate"));
        assert!(same_head("folders", "directory"));
        assert!(same_head("sunset", "decommission"));
        assert!(same_head("silenced", "mute"));
        assert!(same_head("consolidate", "merge"));
        assert!(same_head("synchronise", "sync"));
        assert!(same_head("bulk", "batch"));
        assert!(same_head("k8s", "kubernetes"));
        assert!(same_head("prod", "production"));
        assert!(same_head("MR", "merge-request"));
        assert!(same_head("banned", "block") || head("banned").is_none());
        assert!(!same_head("merge", "split"));
        assert!(!same_head("sync", "async"));
        assert!(!same_head("prod", "staging"));
        assert!(!same_head("firstname", "lastname"));
        assert!(!same_head("encrypt", "decrypt"));
        assert!(!same_head("upload", "download"));
        assert!(!same_head("rollback", "undo"));
        assert!(!same_head("chargeback", "refund"));
        // spelling variants the stemmer does not meet
        assert!(same_head("optimisation", "optimization"));
        assert!(same_head("localisation", "translate"));
    }

    #[test]
    fn new_phrases_read_as_one_word() {
        assert_eq!(
            canonical("Get rid of the drop down on the settings page"),
            "delete the dropdown on the settings page"
        );
        assert_eq!(canonical("Clean up stale feature flags"), "cleanup inactive flag");
        assert_eq!(canonical("Revert the WIP release notes"), "rollback the work-in-progress changelog");
        assert_eq!(canonical("Wipe the WIP branch"), "delete the work-in-progress branch");
        assert_eq!(canonical("Dark theme for the nav bar"), "dark-mode for the navbar");
        assert_eq!(canonical("Fall back to the replica on fail over"), "fallback to the replica on failover");
        assert_eq!(canonical("Spring Boot upgrade"), "spring-boot upgrade");
        assert_eq!(canonical("Double click opens the date picker"), "double-click opens the datepicker");
        assert_eq!(canonical("Phase out the legacy env vars"), "decommission the deprecated environment-variables");
        // whole words only
        assert_eq!(join_phrases("Wipe wipes"), "Wipe wipes");
        assert_eq!(join_phrases("set upstream"), "set upstream");
    }

    #[test]
    fn no_group_pairs_two_members_of_one_slot() {
        // a slot swap (staging/production, create/delete) must stay visible
        for line in GROUPS {
            let words: Vec<&str> = line.split(' ').collect();
            for (i, a) in words.iter().enumerate() {
                for b in &words[i + 1..] {
                    let (sa, sb) = (crate::text::slot(&fold(a)), crate::text::slot(&fold(b)));
                    assert!(
                        !(sa.is_some() && sa == sb && fold(a) != fold(b)),
                        "{a} and {b} are both {sa:?} slot members but share the group {line:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn phrases_become_one_word() {
        // a phrase is looked up by its first word: each begins with one
        for (phrase, _) in PHRASES {
            assert!(phrase.bytes().next().is_some_and(phrase_byte), "{phrase:?} must begin with a word");
            assert_eq!(phrase, &phrase.to_ascii_lowercase(), "phrases are lower-case ASCII");
        }
        assert_eq!(join_phrases("Roll out the new pricing page"), "rollout the new pricing page");
        assert_eq!(join_phrases("Users can't sign up with SSO"), "Users can't signup with SSO");
        assert_eq!(join_phrases("Don't display the banner"), "hide the banner");
        assert_eq!(join_phrases("Roll back, then log out."), "rollback, then logout.");
        // whole words only
        assert_eq!(join_phrases("Payroll outage"), "Payroll outage");
        assert_eq!(join_phrases("setup, sign-upx"), "setup, sign-upx");
        assert_eq!(join_phrases("Café log in"), "Café login");
        assert_eq!(join_phrases(""), "");
        // letters whose lower case has another length in bytes
        assert_eq!(join_phrases("ẞİ log in İẞ"), "ẞİ login İẞ");
        assert_eq!(canonical("ẞİ Relaunch İ"), "ẞİ restart İ");
    }

    #[test]
    fn canonical_text_says_a_rewrite_in_the_same_words() {
        assert_eq!(canonical("Relaunch dead queue readers"), "restart dead queue consumer");
        assert_eq!(canonical("Restart crashed consumers"), "restart crash consumer");
        assert_eq!(canonical("Throttle requests hitting the public API"), "throttle requests hitting the public API");
        assert_eq!(canonical("Add rate limiting to the public API"), "add throttle to the public API");
        assert_eq!(canonical("Repair the screen reader labels"), "fix the screen-reader labels");
        assert_eq!(canonical("Tear down the review apps"), "delete the review apps");
        // what is not a word of a group stays exactly as written
        assert_eq!(canonical("Bump serde to 1.0.200 (see #42)!"), "upgrade serde to 1.0.200 (see #42)!");
        assert_eq!(canonical(""), "");
    }

    #[test]
    fn the_revision_changes_with_the_tables() {
        // FNV-1a over the tables: stable across builds and platforms
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut eat = |s: &str| {
            for b in s.bytes().chain([0u8]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        GROUPS.iter().for_each(|g| eat(g));
        PHRASES.iter().for_each(|(a, b)| {
            eat(a);
            eat(b);
        });
        assert_eq!(
            (REVISION, format!("{h:016x}").as_str()),
            ("thesaurus4", "bfebc9d80c844a1b"),
            "the thesaurus changed: set REVISION to a new value, then pin both here"
        );
    }
}
