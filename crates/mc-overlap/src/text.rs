//! Text normalisation for overlap detection: tokens, light stemming, abbreviations, how generic a
//! word is (rarity weight), and the "slot" categories whose swap makes a different object
//! (staging vs production, Redis vs Kafka, French vs Italian...).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

/// Words that carry no meaning for overlap.
const STOPWORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "to",
    "for",
    "of",
    "in",
    "on",
    "with",
    "and",
    "or",
    "by",
    "from",
    "at",
    "as",
    "is",
    "are",
    "be",
    "so",
    "that",
    "this",
    "these",
    "those",
    "it",
    "its",
    "into",
    "onto",
    "when",
    "every",
    "any",
    "all",
    "per",
    "via",
    "our",
    "we",
    "us",
    "you",
    "your",
    "should",
    "can",
    "could",
    "would",
    "will",
    "must",
    "need",
    "needs",
    "also",
    "than",
    "then",
    "there",
    "their",
    "them",
    "they",
    "which",
    "who",
    "what",
    "how",
    "why",
    "where",
    "if",
    "else",
    "not",
    "no",
    "do",
    "does",
    "did",
    "has",
    "have",
    "had",
    "was",
    "were",
    "been",
    "being",
    "up",
    "out",
    "over",
    "under",
    "about",
    "after",
    "before",
    "between",
    "instead",
    "only",
    "just",
    "some",
    "more",
    "most",
    "other",
    "each",
    "both",
    "one",
    "own",
    "same",
    "such",
    "too",
    "very",
    "it's",
    "don't",
    "doesn't",
    "can't",
    "won't",
    "etc",
    "e.g",
    "i.e",
    "via",
    "within",
    "without",
    "across",
    "throughout",
    "whenever",
    "again",
    "still",
    "yet",
];

/// Common verbs and nouns of task titles: they say little about *which* work it is, so they weigh
/// less in lexical overlap and are not counted as a swapped object.
const GENERIC: &[&str] = &[
    "add",
    "fix",
    "update",
    "create",
    "make",
    "implement",
    "support",
    "improve",
    "write",
    "set",
    "use",
    "remove",
    "enable",
    "allow",
    "handle",
    "build",
    "change",
    "move",
    "get",
    "let",
    "keep",
    "run",
    "check",
    "ensure",
    "new",
    "old",
    "issue",
    "bug",
    "task",
    "work",
    "feature",
    "code",
    "page",
    "file",
    "files",
    "user",
    "users",
    "api",
    "service",
    "data",
    "test",
    "tests",
    "error",
    "errors",
    "current",
    "existing",
    "proper",
    "properly",
    "correct",
    "correctly",
    "better",
    "way",
    "thing",
    "stuff",
    "start",
    "stop",
    "show",
    "display",
    "appear",
    "happen",
    "happens",
    "instead",
    "want",
    "wants",
    "able",
    "possible",
    "sure",
    "clean",
    "tidy",
    "investigate",
    "look",
    "into",
    "small",
    "large",
    "simple",
    "basic",
    "initial",
    "first",
    "last",
    "next",
    "default",
    "option",
    "options",
    "flow",
    "part",
    "step",
    "steps",
    "level",
    "type",
    "types",
    "value",
    "values",
    "list",
    "item",
    "items",
];

/// Abbreviations and synonyms folded to one spelling.
const SYNONYMS: &[(&str, &str)] = &[
    ("k8s", "kubernetes"),
    ("kube", "kubernetes"),
    ("db", "database"),
    ("dbs", "database"),
    ("docs", "documentation"),
    ("doc", "documentation"),
    ("auth", "authentication"),
    ("authn", "authentication"),
    ("authz", "authorization"),
    ("repo", "repository"),
    ("repos", "repository"),
    ("config", "configuration"),
    ("configs", "configuration"),
    ("env", "environment"),
    ("envs", "environment"),
    ("prod", "production"),
    ("stg", "staging"),
    ("i18n", "internationalization"),
    ("internationalise", "internationalization"),
    ("internationalize", "internationalization"),
    ("l10n", "localization"),
    ("localise", "localization"),
    ("localize", "localization"),
    ("ui", "interface"),
    ("gui", "interface"),
    ("msg", "message"),
    ("msgs", "message"),
    ("perf", "performance"),
    ("img", "image"),
    ("imgs", "image"),
    ("pic", "photo"),
    ("picture", "photo"),
    ("avatar", "photo"),
    ("app", "application"),
    ("apps", "application"),
    ("js", "javascript"),
    ("ts", "typescript"),
    ("py", "python"),
    ("gh", "github"),
    ("tf", "terraform"),
    ("infra", "infrastructure"),
    ("deps", "dependency"),
    ("dep", "dependency"),
    ("dependencies", "dependency"),
    ("pr", "pull-request"),
    ("prs", "pull-request"),
    ("telephone", "phone"),
    ("hyperlink", "link"),
    ("hyperlinks", "link"),
    ("url", "link"),
    ("urls", "link"),
    ("postgresql", "postgres"),
    ("pg", "postgres"),
    ("mongo", "mongodb"),
    ("es", "elasticsearch"),
    ("gcp", "google-cloud"),
    ("stylesheet", "css"),
    ("stylesheets", "css"),
    ("fe", "frontend"),
    ("be", "backend"),
    ("svc", "service"),
    ("ci/cd", "ci"),
    ("deploy", "deployment"),
    ("deploys", "deployment"),
    ("rollout", "deployment"),
    ("rollouts", "deployment"),
    ("crash", "crash"),
    ("crashes", "crash"),
    ("panicking", "crash"),
    ("panic", "crash"),
    ("dies", "crash"),
    ("remove", "delete"),
    ("removal", "delete"),
    ("edit", "update"),
    ("modify", "update"),
    ("catalog", "catalogue"),
];

/// Changes whenever [`ACRONYMS`] change (a test pins their hash): an expansion changes the text an
/// embedder is given, so vectors are stored under a model id that carries this revision (see
/// `ScorerModel::vector_model_id`) and a new table re-embeds them.
pub const ACRONYM_REVISION: &str = "acronyms2";

/// Common acronyms of software work and what they stand for. The embedded text carries the
/// expansion after the acronym; the lexical signals read the acronym as one word that matches its
/// expansion written out, so "RBAC" meets "role-based access control".
const ACRONYMS: &[(&str, &str)] = &[
    ("abac", "attribute-based access control"),
    ("ach", "automated clearing house"),
    ("ack", "acknowledgement"),
    ("acl", "access control list"),
    ("adr", "architecture decision record"),
    ("ai", "artificial intelligence"),
    ("aks", "azure kubernetes service"),
    ("alb", "application load balancer"),
    ("ami", "aws machine image"),
    ("apigw", "api gateway"),
    ("apm", "application performance monitoring"),
    ("apns", "apple push notification service"),
    ("asg", "autoscaling group"),
    ("ast", "abstract syntax tree"),
    ("bff", "backend for frontend"),
    ("ble", "bluetooth low energy"),
    ("bnpl", "buy now pay later"),
    ("cd", "continuous delivery"),
    ("cdc", "change data capture"),
    ("cdn", "content delivery network"),
    ("ci", "continuous integration"),
    ("cicd", "continuous integration continuous delivery"),
    ("cidr", "ip address range"),
    ("cjs", "commonjs modules"),
    ("cli", "command line"),
    ("cls", "cumulative layout shift"),
    ("cms", "content management system"),
    ("cors", "cross-origin resource sharing"),
    ("cpu", "processor"),
    ("cqrs", "command query responsibility segregation"),
    ("crd", "custom resource definition"),
    ("creds", "credentials"),
    ("crm", "customer relationship management"),
    ("crud", "create read update delete"),
    ("csat", "customer satisfaction score"),
    ("csp", "content security policy"),
    ("csrf", "cross-site request forgery"),
    ("csv", "comma-separated values"),
    ("cta", "call to action"),
    ("ctr", "click-through rate"),
    ("cvss", "common vulnerability scoring system"),
    ("cwv", "core web vitals"),
    ("cx", "customer experience"),
    ("dag", "directed acyclic graph"),
    ("dast", "dynamic application security testing"),
    ("dau", "daily active users"),
    ("ddl", "schema definition"),
    ("ddos", "distributed denial of service"),
    ("dkim", "domainkeys identified mail"),
    ("dlp", "data loss prevention"),
    ("dlq", "dead letter queue"),
    ("dmarc", "domain-based message authentication reporting conformance"),
    ("dns", "domain name system"),
    ("dom", "document object model"),
    ("dr", "disaster recovery"),
    ("dsar", "data subject access request"),
    ("dwh", "data warehouse"),
    ("dx", "developer experience"),
    ("e2e", "end-to-end"),
    ("ec2", "aws elastic compute cloud"),
    ("ecr", "aws elastic container registry"),
    ("ecs", "aws elastic container service"),
    ("eks", "aws elastic kubernetes service"),
    ("elb", "elastic load balancer"),
    ("erp", "enterprise resource planning"),
    ("esm", "ecmascript modules"),
    ("etl", "extract transform load"),
    ("faq", "frequently asked questions"),
    ("fcm", "firebase cloud messaging"),
    ("fcp", "first contentful paint"),
    ("fk", "foreign key"),
    ("fps", "frames per second"),
    ("gc", "garbage collection"),
    ("gdpr", "data protection privacy"),
    ("gha", "github actions"),
    ("gke", "google kubernetes engine"),
    ("gql", "graphql"),
    ("guid", "globally unique identifier"),
    ("gw", "gateway"),
    ("ha", "high availability"),
    ("hmac", "hash-based message authentication code"),
    ("hmr", "hot module replacement"),
    ("hpa", "horizontal pod autoscaler"),
    ("hsm", "hardware security module"),
    ("hsts", "http strict transport security"),
    ("iac", "infrastructure as code"),
    ("iam", "identity access management"),
    ("idor", "insecure direct object reference"),
    ("inp", "interaction to next paint"),
    ("iops", "disk operations per second"),
    ("jvm", "java virtual machine"),
    ("jwks", "json web key set"),
    ("jwt", "json web token"),
    ("kms", "key management service"),
    ("kpi", "key performance indicator"),
    ("kyc", "know your customer"),
    ("lb", "load balancer"),
    ("lcp", "largest contentful paint"),
    ("ldap", "lightweight directory access protocol"),
    ("llm", "large language model"),
    ("lru", "least recently used"),
    ("lts", "long-term support"),
    ("ltv", "customer lifetime value"),
    ("mau", "monthly active users"),
    ("mfa", "multi-factor authentication"),
    ("ml", "machine learning"),
    ("mq", "message queue"),
    ("mrr", "monthly recurring revenue"),
    ("mtbf", "mean time between failures"),
    ("mtls", "mutual tls"),
    ("mttd", "mean time to detection"),
    ("mttr", "mean time to recovery"),
    ("mvp", "minimum viable product"),
    ("nat", "network address translation"),
    ("nfs", "network file system"),
    ("nlb", "network load balancer"),
    ("nlp", "natural language processing"),
    ("nps", "net promoter score"),
    ("ocr", "optical character recognition"),
    ("oidc", "openid connect"),
    ("okr", "objectives and key results"),
    ("olap", "online analytical processing"),
    ("oltp", "online transaction processing"),
    ("oom", "out of memory"),
    ("orm", "object relational mapping"),
    ("os", "operating system"),
    ("oss", "open source software"),
    ("ota", "over-the-air update"),
    ("otel", "opentelemetry"),
    ("otp", "one-time password"),
    ("p50", "median latency"),
    ("p90", "90th percentile latency"),
    ("p95", "95th percentile latency"),
    ("p99", "99th percentile latency"),
    ("pat", "personal access token"),
    ("pci", "payment card industry"),
    ("pii", "personal data"),
    ("pk", "primary key"),
    ("pkce", "proof key for code exchange"),
    ("pki", "public key infrastructure"),
    ("prd", "product requirements document"),
    ("psp", "payment service provider"),
    ("pvc", "persistent volume claim"),
    ("pwa", "progressive web app"),
    ("qps", "queries per second"),
    ("rag", "retrieval-augmented generation"),
    ("rbac", "role-based access control"),
    ("rca", "root cause analysis"),
    ("rce", "remote code execution"),
    ("rds", "aws relational database service"),
    ("rebac", "relationship-based access control"),
    ("rfc", "request for comments"),
    ("rpc", "remote procedure call"),
    ("rpo", "recovery point objective"),
    ("rps", "requests per second"),
    ("rto", "recovery time objective"),
    ("rtt", "round-trip time"),
    ("saas", "software as a service"),
    ("saml", "security assertion markup language"),
    ("sast", "static application security testing"),
    ("sbom", "software bill of materials"),
    ("scim", "system for cross-domain identity management"),
    ("sdk", "software development kit"),
    ("semver", "semantic versioning"),
    ("seo", "search engine optimization"),
    ("sftp", "secure file transfer protocol"),
    ("siem", "security information event management"),
    ("sku", "stock keeping unit"),
    ("sla", "service level agreement"),
    ("sli", "service level indicator"),
    ("slo", "service level objective"),
    ("smtp", "mail"),
    ("sop", "standard operating procedure"),
    ("spa", "single-page application"),
    ("spf", "sender policy framework"),
    ("sqli", "sql injection"),
    ("sre", "site reliability engineering"),
    ("sri", "subresource integrity"),
    ("ssg", "static site generation"),
    ("ssh", "secure shell"),
    ("ssl", "secure sockets layer"),
    ("ssn", "social security number"),
    ("sso", "single sign-on"),
    ("ssot", "single source of truth"),
    ("ssr", "server-side rendering"),
    ("ssrf", "server-side request forgery"),
    ("tls", "transport layer security"),
    ("tos", "terms of service"),
    ("totp", "time-based one-time password"),
    ("tps", "transactions per second"),
    ("ttfb", "time to first byte"),
    ("tti", "time to interactive"),
    ("txn", "transaction"),
    ("tz", "time zone"),
    ("ugc", "user-generated content"),
    ("utm", "campaign tracking parameters"),
    ("uuid", "universally unique identifier"),
    ("ux", "user experience"),
    ("vat", "value added tax"),
    ("vcs", "version control system"),
    ("vpc", "virtual private cloud"),
    ("vpn", "virtual private network"),
    ("waf", "web application firewall"),
    ("wal", "write-ahead log"),
    ("wasm", "webassembly"),
    ("wau", "weekly active users"),
    ("wcag", "web content accessibility guidelines"),
    ("wysiwyg", "rich text editor"),
    ("xsrf", "cross-site request forgery"),
    ("xss", "cross-site scripting"),
    ("2fa", "two-factor authentication"),
    ("3ds", "three-domain secure"),
];

/// The expansion of a known acronym.
pub fn acronym(word: &str) -> Option<&'static str> {
    static MAP: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| ACRONYMS.iter().copied().collect()).get(word.to_lowercase().as_str()).copied()
}

/// The text to embed: known acronyms are followed by their expansion in parentheses.
pub fn expand_acronyms(text: &str) -> String {
    map_words(text, char::is_alphanumeric, |word, out| {
        out.push_str(word);
        if let Some(e) = acronym(word) {
            out.push_str(" (");
            out.push_str(e);
            out.push(')');
        }
    })
}

/// Rewrites the words of `text` (runs of characters `in_word` accepts) with `write`, and copies
/// everything between them as it is.
pub(crate) fn map_words(
    text: &str,
    in_word: impl Fn(char) -> bool,
    mut write: impl FnMut(&str, &mut String),
) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (in_word(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                write(&text[s..i], &mut out);
                start = None;
                out.push(c);
            }
            (false, None) => out.push(c),
            (true, Some(_)) => {}
        }
    }
    if let Some(s) = start {
        write(&text[s..], &mut out);
    }
    out
}

/// How much of a text an embedder is given: 32 KiB, about the 8,000-token window of the largest
/// hosted embedding models (the in-process ones read 128 or 256 tokens). Preparing a 120 KB doc
/// body whole for a model that reads its first 128 tokens cost tens of milliseconds.
pub const EMBEDDED_BYTES: usize = 32 * 1024;

/// What an embedder is given for a text (a title, then its description): its first
/// [`EMBEDDED_BYTES`], known acronyms followed by their expansion, after synonyms were replaced by
/// the word of their thesaurus group when `canonical` (see [`crate::thesaurus::canonical`]).
pub fn embedding_input(text: &str, canonical: bool) -> String {
    let mut end = text.len().min(EMBEDDED_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    if canonical { expand_acronyms(&crate::thesaurus::canonical(text)) } else { expand_acronyms(text) }
}

/// Slot categories: swapping one member for another names a different object.
const SLOTS: &[(&str, &[&str])] = &[
    (
        "environment",
        &[
            "dev",
            "development",
            "staging",
            "production",
            "preprod",
            "pre-production",
            "qa",
            "sandbox",
            "uat",
            "canary",
            "local",
            "integration",
            "demo",
            "test-env",
        ],
    ),
    (
        "language",
        &[
            "english",
            "french",
            "german",
            "italian",
            "spanish",
            "portuguese",
            "japanese",
            "chinese",
            "korean",
            "dutch",
            "polish",
            "russian",
            "arabic",
            "hindi",
            "swedish",
            "norwegian",
            "danish",
            "finnish",
            "turkish",
            "greek",
            "czech",
            "hebrew",
            "thai",
            "vietnamese",
            "indonesian",
            "ukrainian",
            "romanian",
            "hungarian",
        ],
    ),
    (
        "market",
        &[
            "indian",
            "mexican",
            "brazilian",
            "canadian",
            "australian",
            "british",
            "american",
            "european",
            "us",
            "eu",
            "uk",
            "apac",
            "emea",
            "latam",
            "india",
            "mexico",
            "brazil",
            "canada",
            "australia",
            "germany",
            "france",
            "japan",
            "china",
            "spain",
            "italy",
        ],
    ),
    (
        "cloud",
        &[
            "aws",
            "azure",
            "google-cloud",
            "gcs",
            "s3",
            "cloudflare",
            "digitalocean",
            "heroku",
            "vercel",
            "netlify",
            "fly",
            "linode",
            "hetzner",
            "oci",
            "ibm",
            "alibaba",
        ],
    ),
    (
        "vendor",
        &[
            "stripe",
            "paypal",
            "adyen",
            "braintree",
            "twilio",
            "sendgrid",
            "mailgun",
            "postmark",
            "github",
            "gitlab",
            "bitbucket",
            "okta",
            "auth0",
            "azure-ad",
            "keycloak",
            "slack",
            "teams",
            "discord",
            "jira",
            "linear",
            "zendesk",
            "intercom",
            "segment",
            "mixpanel",
            "amplitude",
            "datadog",
            "sentry",
            "pagerduty",
            "opsgenie",
            "newrelic",
            "honeycomb",
            "google",
            "apple",
            "facebook",
            "microsoft",
            "salesforce",
            "hubspot",
            "shopify",
        ],
    ),
    (
        "platform",
        &[
            "ios", "android", "windows", "macos", "linux", "web", "desktop", "mobile", "iphone", "ipad", "chrome",
            "firefox", "safari", "edge", "arm64", "x86", "amd64", "tablet", "watch", "tv",
        ],
    ),
    (
        "technology",
        &[
            "redis",
            "kafka",
            "postgres",
            "mysql",
            "mariadb",
            "mongodb",
            "cockroachdb",
            "elasticsearch",
            "opensearch",
            "rabbitmq",
            "nats",
            "sqs",
            "sns",
            "dynamodb",
            "cassandra",
            "clickhouse",
            "snowflake",
            "bigquery",
            "redshift",
            "airflow",
            "dagster",
            "prefect",
            "spark",
            "flink",
            "grafana",
            "prometheus",
            "loki",
            "tempo",
            "jaeger",
            "nginx",
            "envoy",
            "istio",
            "linkerd",
            "helm",
            "terraform",
            "pulumi",
            "ansible",
            "docker",
            "podman",
            "kubernetes",
            "nomad",
            "memcached",
            "valkey",
            "dragonfly",
            "sqlite",
            "duckdb",
            "react",
            "vue",
            "angular",
            "svelte",
            "django",
            "rails",
            "flask",
            "fastapi",
            "express",
            "spring",
            "node",
            "deno",
            "bun",
            "python",
            "ruby",
            "go",
            "golang",
            "rust",
            "java",
            "kotlin",
            "swift",
            "scala",
            "php",
            "typescript",
            "javascript",
            "graphql",
            "grpc",
            "rest",
            "websocket",
            "mqtt",
            "celery",
            "sidekiq",
            "webpack",
            "vite",
            "jest",
            "pytest",
            "cypress",
            "playwright",
            "selenium",
            "vitest",
            "gradle",
            "maven",
            "npm",
            "yarn",
            "pnpm",
            "pip",
            "poetry",
            "cargo",
            "onnx",
            "pytorch",
            "tensorflow",
            "torchscript",
        ],
    ),
    (
        "currency",
        &[
            "usd", "eur", "gbp", "jpy", "chf", "yen", "franc", "francs", "euro", "euros", "dollar", "dollars", "pound",
            "pounds", "rupee", "rupees", "peso", "pesos", "real", "reais", "yuan",
        ],
    ),
    (
        "operation",
        &[
            "create",
            "delete",
            "list",
            "read",
            "write",
            "rollback",
            "roll",
            "undo",
            "merge",
            "split",
            "export",
            "import",
            "sort",
            "sorting",
            "filter",
            "filtering",
            "search",
            "upload",
            "download",
            "archive",
            "restore",
            "backup",
            "enable",
            "disable",
            "encrypt",
            "decrypt",
            "approve",
            "reject",
            "publish",
            "unpublish",
            "subscribe",
            "unsubscribe",
            "pause",
            "resume",
            "retry",
            "cancel",
            "clone",
            "rename",
            "resize",
            "resizing",
            "scale",
            "migrate",
        ],
    ),
];

fn stopword(w: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| STOPWORDS.iter().copied().collect()).contains(w)
}

fn synonym(w: &str) -> Option<&'static str> {
    static MAP: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| SYNONYMS.iter().copied().collect()).get(w).copied()
}

fn slot_member(w: &str) -> Option<&'static str> {
    static MAP: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| SLOTS.iter().flat_map(|(cat, members)| members.iter().map(move |m| (*m, *cat))).collect())
        .get(w)
        .copied()
}

fn generic(w: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| GENERIC.iter().copied().collect()).contains(w)
}

/// A normalised token, with its original spelling kept for explanations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Token {
    pub norm: String,
    pub original: String,
}

fn stem(word: &str) -> String {
    let w = word;
    let n = w.chars().count();
    if w.chars().any(|c| c.is_ascii_digit()) || w.starts_with('/') || n <= 3 {
        return w.to_owned();
    }
    for (suffix, replacement, min) in [
        ("ies", "y", 5),
        ("sses", "ss", 5),
        ("ing", "", 6),
        ("ised", "ize", 6),
        ("ized", "ize", 6),
        ("ise", "ize", 5),
        ("ed", "", 5),
        ("es", "", 6),
        ("s", "", 4),
    ] {
        if n >= min && w.ends_with(suffix) && !(suffix == "s" && (w.ends_with("ss") || w.ends_with("us"))) {
            let base = &w[..w.len() - suffix.len()];
            return format!("{base}{replacement}");
        }
    }
    w.to_owned()
}

/// A word as tokens carry it: lower-cased, synonyms folded, lightly stemmed.
pub(crate) fn fold(raw: &str) -> String {
    let lower = raw.to_lowercase();
    if let Some(to) = synonym(&lower) {
        return to.to_owned();
    }
    if slot(&lower).is_some() {
        return lower; // names of things are not stemmed (`staging` is not `stag`)
    }
    let s = stem(&lower);
    synonym(&s).map(str::to_owned).unwrap_or(s)
}

/// Splits text into content tokens: lower-cased, stopwords dropped, synonyms folded, lightly
/// stemmed. Versions (`3.11`), endpoints (`/login`) and hyphenated names (`auth-service`) stay
/// whole.
pub fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    let flush = |cur: &mut String, out: &mut Vec<Token>| {
        let trimmed = cur.trim_matches(|c: char| c == '.' || c == '-' || c == '\'' || c == '_');
        // the possessive is not part of the word: "page's" is "page"
        let t = trimmed.strip_suffix("'s").or_else(|| trimmed.strip_suffix("’s")).unwrap_or(trimmed).to_owned();
        cur.clear();
        if t.is_empty() || (t.len() == 1 && !t.chars().all(|c| c.is_ascii_digit())) {
            return;
        }
        let lower = t.to_lowercase();
        if stopword(&lower) {
            return;
        }
        let known = synonym(&lower).is_some() || slot(&lower).is_some();
        if !known && !lower.starts_with('/') && lower.contains(['-', '_']) {
            // compounds count by their parts: `auth-service` vs `cart-service` differ in one part
            for part in t.split(['-', '_']).filter(|p| p.len() > 1 || p.chars().all(|c| c.is_ascii_digit())) {
                if !stopword(&part.to_lowercase()) {
                    out.push(Token { norm: fold(part), original: part.to_owned() });
                }
            }
            return;
        }
        if acronym(&lower).is_some() {
            // one token, however long its expansion: "RBAC" meets "role-based access control"
            // when the features match tokens (see `features::spelled_out`)
            out.push(Token { norm: lower, original: t });
            return;
        }
        out.push(Token { norm: fold(&t), original: t });
    };
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied().unwrap_or(' ');
        let keep = c.is_alphanumeric()
            || ((c == '-' || c == '_' || c == '\'') && !cur.is_empty() && next.is_alphanumeric())
            || (c == '.' && !cur.is_empty() && next.is_ascii_digit())
            || (c == '/' && (cur.is_empty() || cur.starts_with('/')) && next.is_alphanumeric());
        if keep {
            cur.push(c);
        } else {
            flush(&mut cur, &mut out);
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// How much a token says about which work it is: generic task words weigh little.
pub fn weight(norm: &str) -> f32 {
    if generic(norm) {
        0.25
    } else if norm.chars().count() <= 2 && !norm.chars().any(|c| c.is_ascii_digit()) {
        0.5
    } else {
        1.0
    }
}

/// Whether a token is generic (does not name an object).
pub fn is_generic(norm: &str) -> bool {
    generic(norm)
}

/// The slot category of a token, if it names one member of a family of interchangeable objects.
pub fn slot(norm: &str) -> Option<&'static str> {
    if norm.starts_with('/') {
        return Some("endpoint");
    }
    let digits = norm.trim_start_matches('v');
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Some("version");
    }
    slot_member(norm)
}

/// The set of normalised tokens.
pub fn norm_set(tokens: &[Token]) -> BTreeSet<String> {
    tokens.iter().map(|t| t.norm.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedder_is_given_at_most_the_first_32_kib() {
        // "é" straddles the bound: the cut falls before it, on a character boundary
        let long = format!("{}aé{}", "a ".repeat(EMBEDDED_BYTES / 2 - 1), "b ".repeat(1000));
        let given = embedding_input(&long, false);
        assert_eq!(given.len(), EMBEDDED_BYTES - 1);
        assert!(!given.contains('é') && !given.contains('b'), "the rest is left out");
        let short = "Rotate the signing keys";
        assert_eq!(embedding_input(short, false), short);
    }

    fn norms(s: &str) -> Vec<String> {
        tokens(s).into_iter().map(|t| t.norm).collect()
    }

    #[test]
    fn tokens_keep_versions_endpoints_and_names() {
        assert_eq!(norms("Upgrade the pipeline to Python 3.11"), vec!["upgrade", "pipeline", "python", "3.11"]);
        assert_eq!(norms("Rate-limit POST /login per IP"), vec!["rate", "limit", "post", "/login", "ip"]);
        assert_eq!(norms("Deploy auth-service to k8s"), vec!["deployment", "authentication", "service", "kubernetes"]);
        assert_eq!(norms("Fixing broken links in the docs"), vec!["fix", "broken", "link", "documentation"]);
        assert_eq!(norms("The page's title"), vec!["page", "title"]);
    }

    #[test]
    fn acronyms_meet_their_expansions() {
        assert_eq!(expand_acronyms("Add RBAC to the API."), "Add RBAC (role-based access control) to the API.");
        // an acronym is one word, however long its expansion (the features match it against the
        // expansion written out)
        assert_eq!(norms("Add RBAC to the admin API"), vec!["add", "rbac", "admin", "api"]);
        assert_eq!(norms("Introduce role-based access control"), vec!["introduce", "role", "bas", "access", "control"]);
    }

    #[test]
    fn new_acronyms_meet_their_expansions() {
        assert_eq!(
            expand_acronyms("Enable HSTS and a CSP"),
            "Enable HSTS (http strict transport security) and a CSP (content security policy)"
        );
        assert_eq!(
            expand_acronyms("Move poison messages to a DLQ"),
            "Move poison messages to a DLQ (dead letter queue)"
        );
        assert_eq!(expand_acronyms("Set up HA for the broker"), "Set up HA (high availability) for the broker");
        assert_eq!(acronym("mTLS"), Some("mutual tls"));
        assert_eq!(acronym("EC2"), Some("aws elastic compute cloud"));
        assert_eq!(acronym("wipe"), None);
    }

    #[test]
    fn the_acronym_table_is_sorted_and_each_acronym_reaches_the_model() {
        let keys: Vec<&str> = ACRONYMS.iter().map(|(k, _)| *k).collect();
        let mut sorted = keys.clone();
        sorted.sort_by_key(|k| (k.starts_with(|c: char| c.is_ascii_digit()), *k));
        sorted.dedup();
        assert_eq!(keys, sorted, "alphabetical (those that begin with a digit last), each once");
        // slot words an expansion may say: the object the acronym names ("EKS" is on AWS), or a
        // word of a long-standing spelled-out name ("software development kit")
        let named = ["aws", "azure", "google", "apple", "github", "java", "graphql", "kubernetes", "web"];
        let spelled = ["create", "read", "delete", "write", "list", "search", "integration", "development"];
        for (acr, expansion) in ACRONYMS {
            assert_eq!(acr.to_lowercase(), *acr);
            assert_eq!(expansion.to_lowercase(), *expansion);
            assert!(!stopword(acr) && synonym(acr).is_none() && slot(acr).is_none(), "{acr}");
            // the thesaurus leaves the acronym as written, so the model is given its expansion
            let canonical = crate::thesaurus::canonical(acr);
            assert_eq!(canonical, *acr);
            for w in expansion.split([' ', '-']) {
                assert!(
                    slot(&fold(w)).is_none() || named.contains(&w) || spelled.contains(&w),
                    "{acr}: {w} is a slot word"
                );
            }
        }
    }

    #[test]
    fn slots_and_weights() {
        assert_eq!(slot("staging"), Some("environment"));
        assert_eq!(slot("production"), Some("environment"));
        assert_eq!(slot("3.12"), Some("version"));
        assert_eq!(slot("v2"), Some("version"));
        assert_eq!(slot("/orders"), Some("endpoint"));
        assert_eq!(slot("redis"), Some("technology"));
        assert_eq!(slot("parser"), None);
        assert!(weight("add") < weight("parser"));
    }

    #[test]
    fn the_acronym_revision_changes_with_the_table() {
        // FNV-1a over the table: stable across builds and platforms
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for (a, e) in ACRONYMS {
            for b in a.bytes().chain([0u8]).chain(e.bytes()).chain([0u8]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        assert_eq!(
            (ACRONYM_REVISION, format!("{h:016x}").as_str()),
            ("acronyms2", "1bbd54bd01176e7b"),
            "the acronym table changed: set ACRONYM_REVISION to a new value, then pin both here"
        );
    }
}
