//! Exact intersection of repo-relative path globs (the common gitignore/globset dialect).
//!
//! Tasks declare the files they expect to touch as globs such as `src/api/**/*.rs` or
//! `web/{app,lib}/**`. [`Glob::intersects`] decides *exactly* whether two such globs can match a
//! common file path, and [`Glob::common_path`] returns a witness path for "why do these overlap"
//! explanations.
//!
//! # Syntax
//!
//! * literal characters; `\` escapes the next character (`\*`, `\[`, `\{`, `\\`, …);
//! * `?` matches one character other than `/`;
//! * `*` matches any run (possibly empty) of characters other than `/`;
//! * `**` as a whole path segment matches whole segments (see below); a `**` that is not a whole
//!   segment (`a**b`, `**.rs`) behaves like `*`;
//! * `[abc]`, `[a-z]`, `[!abc]`, `[^abc]` character classes; they never match `/`. A `]` right after
//!   the opening `[` (or `[!` / `[^`) is literal, a `-` first or last is literal, `\` escapes inside;
//! * `{a,b,c}` alternation, nestable, alternatives may contain globs. Alternation is expanded up
//!   front, textually (the pattern means exactly what writing out each alternative would mean), to
//!   at most [`MAX_ALTERNATIVES`] alternatives totalling at most [`MAX_EXPANDED_CHARS`] characters.
//!   Outside braces `,` is literal; an unmatched `}` is an error;
//! * a trailing `/` means "the directory": `dir/` is treated as `dir/**`;
//! * a leading `/` is accepted and ignored (patterns are always anchored at the repository root,
//!   as a leading `/` means in gitignore); the pattern `/` alone is therefore `**`.
//!
//! Matching is case-sensitive, and `*`/`?` match a leading `.` like any other character.
//!
//! # `**` semantics (follows globset with `literal_separator(true)`)
//!
//! * `**` alone matches every path.
//! * `**/x` matches `x`, `a/x`, `a/b/x` (zero or more leading segments).
//! * `a/**/b` matches `a/b`, `a/x/b`, `a/x/y/b` (zero or more middle segments).
//! * `x/**` matches everything *strictly under* `x` (`x/a`, `x/a/b`, and the string `x/`) but **not**
//!   `x` itself, exactly like globset. Write `{x,x/**}` for "x and everything under it". Since
//!   `dir/` means `dir/**`, it does not match `dir` either.
//!
//! # What "intersect" means
//!
//! [`Glob::matches`] works on arbitrary strings, with globset's string semantics (so `x/**`
//! matches the string `x/`). [`Glob::intersects`] and [`Glob::common_path`] quantify over
//! *well-formed relative file paths*: non-empty, no leading or trailing `/`, no empty segment
//! (`a//b`). Two globs intersect iff some such path matches both; a glob pair whose only common
//! strings are malformed (like `x/` or `a//b`) does not overlap on any real file and is reported
//! as disjoint.
//!
//! # How
//!
//! Braces are expanded textually; each alternative becomes a sequence of steps (a char set, `*`,
//! a `**` form), and the alternatives are merged into a minimal DAG (shared prefixes and
//! suffixes), so `{a,b}{c,d}/long/suffix` stays small. That compiles to one epsilon-free NFA over
//! characters whose transitions are labelled with character *sets* (sorted, merged inclusive
//! `char` ranges). Intersection is a breadth-first reachability search in the product of the two
//! automata and a small "well-formed path" automaton (at a segment start / inside a segment); a
//! product transition exists when the two labels' sets intersect, so the alphabet is never
//! enumerated. Because the search is breadth-first, the witness is a shortest common path;
//! at each step it uses a readable character from the label intersection (`x` if allowed, else a
//! lowercase letter, uppercase letter, digit, other printable ASCII, in that order).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Most alternatives one pattern may expand to through `{…}` alternation.
pub const MAX_ALTERNATIVES: usize = 256;

/// Most characters all brace-expanded alternatives of one pattern may add up to (bounds the work
/// of compiling; any pattern of up to 1 KiB with at most [`MAX_ALTERNATIVES`] alternatives fits).
pub const MAX_EXPANDED_CHARS: usize = 256 * 1024;

/// Most automaton states a compiled pattern may have (after merging the brace alternatives'
/// shared prefixes and suffixes). Intersection explores at most `2 × states(a) × states(b)`
/// product states, so this bounds its time and memory; ordinary patterns of a few hundred bytes
/// stay far below it.
pub const MAX_STATES: usize = 2048;

/// Deepest `{…}` nesting accepted.
const MAX_BRACE_DEPTH: usize = 32;

/// A compiled path glob. See the [module documentation](self) for the dialect and semantics.
#[derive(Clone)]
pub struct Glob {
    pattern: String,
    nfa: Nfa,
}

/// A pattern that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid glob `{}`: {}", self.pattern, self.message)
    }
}

impl std::error::Error for GlobError {}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Glob").field(&self.pattern).finish()
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl FromStr for Glob {
    type Err = GlobError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Glob::parse(s)
    }
}

impl Glob {
    /// Compiles `pattern`. Errors on an empty pattern, an unclosed `[` or `{`, an unmatched `}`,
    /// a dangling `\`, a reversed range such as `[z-a]`, brace alternation that expands past
    /// [`MAX_ALTERNATIVES`] alternatives / [`MAX_EXPANDED_CHARS`] characters, or a pattern whose
    /// automaton exceeds [`MAX_STATES`] states.
    pub fn parse(pattern: &str) -> Result<Glob, GlobError> {
        let err = |message: String| GlobError { pattern: pattern.to_string(), message };
        if pattern.is_empty() {
            return Err(err("empty pattern".to_string()));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let alternatives = expand_braces(&chars, 0).map_err(err)?;
        let mut trie = Trie::new();
        for alternative in &alternatives {
            trie.insert(instructions(lex(alternative).map_err(err)?));
        }
        let nfa = trie.into_nfa();
        if nfa.accept.len() > MAX_STATES {
            return Err(err(format!("too complex: compiles to more than {MAX_STATES} automaton states")));
        }
        Ok(Glob { pattern: pattern.to_string(), nfa })
    }

    /// The pattern as given to [`Glob::parse`].
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Does this glob match the concrete path? String semantics, like globset: `x/**` matches
    /// `x/a` and also the string `x/`, but not `x`.
    pub fn matches(&self, path: &str) -> bool {
        let nfa = &self.nfa;
        let n = nfa.accept.len();
        let mut in_current = vec![false; n];
        let mut in_next = vec![false; n];
        let mut current = vec![0usize];
        let mut next = Vec::new();
        in_current[0] = true;
        for ch in path.chars() {
            for &s in &current {
                for (label, target) in &nfa.edges[s] {
                    if !in_next[*target] && label.contains(ch) {
                        in_next[*target] = true;
                        next.push(*target);
                    }
                }
            }
            for &s in &current {
                in_current[s] = false;
            }
            std::mem::swap(&mut current, &mut next);
            std::mem::swap(&mut in_current, &mut in_next);
            next.clear();
            if current.is_empty() {
                return false;
            }
        }
        current.iter().any(|&s| nfa.accept[s])
    }

    /// Is there at least one well-formed relative path (non-empty, no leading/trailing `/`, no
    /// empty segment) that both globs match? Exact, not a heuristic.
    pub fn intersects(&self, other: &Glob) -> bool {
        self.common_path(other).is_some()
    }

    /// A witness path matched by both globs when they intersect: a shortest one, built from
    /// readable characters where the globs allow (e.g. `src/**/*.rs` ∩ `src/api/*` gives
    /// `src/api/.rs`, `**` ∩ `**` gives `x`). The witness is always a well-formed relative path.
    pub fn common_path(&self, other: &Glob) -> Option<String> {
        product_witness(&self.nfa, &other.nfa)
    }
}

/// Does any pair (one glob from `a`, one from `b`) intersect? Returns the first such pair (in
/// `a`-major order) together with a witness path both match.
pub fn first_overlap<'a>(a: &'a [Glob], b: &'a [Glob]) -> Option<(&'a Glob, &'a Glob, String)> {
    a.iter().find_map(|x| b.iter().find_map(|y| x.common_path(y).map(|witness| (x, y, witness))))
}

// ---------------------------------------------------------------------------------------------
// Character sets.

/// A set of chars as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct CharSet(Vec<(char, char)>);

fn char_succ(c: char) -> Option<char> {
    match c {
        '\u{D7FF}' => Some('\u{E000}'),
        _ => char::from_u32(c as u32 + 1),
    }
}

fn char_pred(c: char) -> Option<char> {
    match c {
        '\0' => None,
        '\u{E000}' => Some('\u{D7FF}'),
        _ => char::from_u32(c as u32 - 1),
    }
}

impl CharSet {
    fn single(c: char) -> Self {
        CharSet(vec![(c, c)])
    }

    fn all() -> Self {
        CharSet(vec![('\0', char::MAX)])
    }

    /// Every char except `/`.
    fn non_slash() -> Self {
        CharSet(vec![('\0', '.'), ('0', char::MAX)])
    }

    fn from_ranges(mut ranges: Vec<(char, char)>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<(char, char)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            if let Some(last) = merged.last_mut()
                && char_succ(last.1).is_none_or(|next| lo <= next)
            {
                last.1 = last.1.max(hi);
                continue;
            }
            merged.push((lo, hi));
        }
        CharSet(merged)
    }

    fn complement(&self) -> Self {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut start = Some('\0');
        for &(lo, hi) in &self.0 {
            let Some(from) = start else { break };
            if lo > from
                && let Some(to) = char_pred(lo)
            {
                out.push((from, to));
            }
            start = char_succ(hi);
        }
        if let Some(from) = start {
            out.push((from, char::MAX));
        }
        CharSet(out)
    }

    fn union(&self, other: &CharSet) -> Self {
        CharSet::from_ranges(self.0.iter().chain(&other.0).copied().collect())
    }

    fn without_slash(&self) -> Self {
        CharSet(common_ranges(self, &CharSet::non_slash()).collect())
    }

    fn contains(&self, c: char) -> bool {
        let i = self.0.partition_point(|&(_, hi)| hi < c);
        i < self.0.len() && self.0[i].0 <= c
    }
}

/// The ranges of `a ∩ b`, in order, without allocating.
fn common_ranges<'a>(a: &'a CharSet, b: &'a CharSet) -> impl Iterator<Item = (char, char)> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        while i < a.0.len() && j < b.0.len() {
            let (alo, ahi) = a.0[i];
            let (blo, bhi) = b.0[j];
            let (lo, hi) = (alo.max(blo), ahi.min(bhi));
            if ahi < bhi {
                i += 1;
            } else {
                j += 1;
            }
            if lo <= hi {
                return Some((lo, hi));
            }
        }
        None
    })
}

/// The most readable char of `lo..=hi` (lower rank is better).
fn readable_in(lo: char, hi: char) -> (u8, char) {
    if lo <= 'x' && 'x' <= hi {
        return (0, 'x');
    }
    let tiers = [('a', 'z'), ('A', 'Z'), ('0', '9'), ('!', '~'), ('\u{A1}', char::MAX)];
    for (rank, (from, to)) in (1u8..).zip(tiers) {
        let candidate = lo.max(from);
        if candidate <= hi.min(to) {
            return (rank, candidate);
        }
    }
    (u8::MAX, lo)
}

/// A readable char other than `/` that both sets contain, if any.
fn best_common_non_slash(a: &CharSet, b: &CharSet) -> Option<char> {
    let mut best: Option<(u8, char)> = None;
    for (lo, hi) in common_ranges(a, b) {
        let parts = if lo <= '/' && '/' <= hi {
            [(lo < '/').then_some((lo, '.')), (hi > '/').then_some(('0', hi))]
        } else {
            [Some((lo, hi)), None]
        };
        for (plo, phi) in parts.into_iter().flatten() {
            let candidate = readable_in(plo, phi);
            if best.is_none_or(|b| candidate < b) {
                best = Some(candidate);
            }
            if candidate.0 == 0 {
                return Some(candidate.1);
            }
        }
    }
    best.map(|(_, c)| c)
}

// ---------------------------------------------------------------------------------------------
// Brace expansion and lexing.

/// Index of the `]` closing the class opened at `s[open] == '['`, with the same rules as the lexer
/// (a `]` first in the class is literal, `\` escapes).
fn class_end(s: &[char], open: usize) -> Option<usize> {
    let mut j = open + 1;
    if matches!(s.get(j), Some('!' | '^')) {
        j += 1;
    }
    if s.get(j) == Some(&']') {
        j += 1;
    }
    while j < s.len() {
        match s[j] {
            '\\' => j += 2,
            ']' => return Some(j),
            _ => j += 1,
        }
    }
    None
}

/// For the `{` at `s[open]`: the index of its matching `}` and of the top-level commas inside.
fn brace_group(s: &[char], open: usize) -> Result<(usize, Vec<usize>), String> {
    let mut depth = 0usize;
    let mut commas = Vec::new();
    let mut j = open;
    while j < s.len() {
        match s[j] {
            '\\' => j += 1,
            '[' => j = class_end(s, j).ok_or_else(|| "unclosed `[`".to_string())?,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((j, commas));
                }
            }
            ',' if depth == 1 => commas.push(j),
            _ => {}
        }
        j += 1;
    }
    Err("unclosed `{`".to_string())
}

fn total_chars(list: &[Vec<char>]) -> usize {
    list.iter().map(Vec::len).sum()
}

/// Expands `{…}` alternation textually (escapes and classes are kept verbatim for the lexer).
fn expand_braces(s: &[char], depth: usize) -> Result<Vec<Vec<char>>, String> {
    if depth > MAX_BRACE_DEPTH {
        return Err(format!("`{{` nested deeper than {MAX_BRACE_DEPTH}"));
    }
    let too_many = || format!("expands to more than {MAX_ALTERNATIVES} alternatives");
    let too_long = || format!("expands to more than {MAX_EXPANDED_CHARS} characters");
    let mut acc: Vec<Vec<char>> = vec![Vec::new()];
    let mut literal_from = 0;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            '\\' => i += 2,
            '[' => i = class_end(s, i).ok_or_else(|| "unclosed `[`".to_string())? + 1,
            '}' => return Err("unmatched `}`".to_string()),
            '{' => {
                let (close, commas) = brace_group(s, i)?;
                let mut options: Vec<Vec<char>> = Vec::new();
                let mut from = i + 1;
                for cut in commas.into_iter().chain(std::iter::once(close)) {
                    options.extend(expand_braces(&s[from..cut], depth + 1)?);
                    if options.len() > MAX_ALTERNATIVES {
                        return Err(too_many());
                    }
                    from = cut + 1;
                }
                for prefix in &mut acc {
                    prefix.extend_from_slice(&s[literal_from..i]);
                }
                if acc.len() * options.len() > MAX_ALTERNATIVES {
                    return Err(too_many());
                }
                if total_chars(&acc) * options.len() + total_chars(&options) * acc.len() > MAX_EXPANDED_CHARS {
                    return Err(too_long());
                }
                acc = acc
                    .iter()
                    .flat_map(|prefix| options.iter().map(move |option| [prefix.as_slice(), option].concat()))
                    .collect();
                i = close + 1;
                literal_from = i;
            }
            _ => i += 1,
        }
    }
    let tail = s.get(literal_from..).unwrap_or_default();
    if total_chars(&acc) + tail.len() * acc.len() > MAX_EXPANDED_CHARS {
        return Err(too_long());
    }
    for prefix in &mut acc {
        prefix.extend_from_slice(tail);
    }
    Ok(acc)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`
    Any,
    /// `*` (two of them forming a whole segment are `**`)
    Star,
    Class(CharSet),
    /// `/`, escaped or not.
    Sep,
}

/// Lexes one brace-free alternative.
fn lex(s: &[char]) -> Result<Vec<Tok>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            '\\' => {
                let Some(&c) = s.get(i + 1) else {
                    return Err("dangling `\\` at the end".to_string());
                };
                out.push(if c == '/' { Tok::Sep } else { Tok::Lit(c) });
                i += 2;
            }
            '?' => {
                out.push(Tok::Any);
                i += 1;
            }
            '*' => {
                out.push(Tok::Star);
                i += 1;
            }
            '/' => {
                out.push(Tok::Sep);
                i += 1;
            }
            '[' => {
                let end = class_end(s, i).ok_or_else(|| "unclosed `[`".to_string())?;
                out.push(Tok::Class(parse_class(&s[i + 1..end])?));
                i = end + 1;
            }
            c => {
                out.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Parses the inside of `[…]` (without the brackets) into the set it matches (never `/`).
fn parse_class(body: &[char]) -> Result<CharSet, String> {
    let (negated, body) = match body.first() {
        Some('!' | '^') => (true, &body[1..]),
        _ => (false, body),
    };
    let read = |k: &mut usize| -> char {
        let c = body[*k];
        *k += 1;
        if c == '\\' {
            let escaped = body.get(*k).copied().unwrap_or('\\');
            *k += 1;
            escaped
        } else {
            c
        }
    };
    let mut ranges = Vec::new();
    let mut k = 0;
    while k < body.len() {
        let lo = read(&mut k);
        if k + 1 < body.len() && body[k] == '-' {
            k += 1;
            let hi = read(&mut k);
            if hi < lo {
                return Err(format!("invalid range `{lo}-{hi}` in a character class"));
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
    let set = CharSet::from_ranges(ranges);
    let set = if negated { set.complement() } else { set };
    Ok(set.without_slash())
}

// ---------------------------------------------------------------------------------------------
// Automata.

/// One step of a compiled alternative. Alternatives are sequences of these; they are merged into
/// a minimal DAG (shared prefixes and suffixes) before being turned into an NFA, so brace
/// expansion such as `{a,b}{c,d}/long/suffix` does not multiply the automaton.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Instr {
    /// Exactly one char of the set.
    Step(CharSet),
    /// `*`: any run of chars other than `/`.
    Star,
    /// A trailing `/**` (after its `/`) or the whole pattern `**`: any string.
    AnyString,
    /// A leading or middle `**/`: the empty string or any string ending in `/`.
    AnyDirs,
}

/// Turns one brace-free alternative into instructions.
///
/// Segments are the token runs between separators. A segment that is exactly `**` becomes, as in
/// globset: the whole pattern `**` → any string; a leading or middle `**/` → `(|.*/)`, i.e. zero
/// or more whole segments (absorbing the following separator); a trailing `/**` → `/.*`.
fn instructions(mut tokens: Vec<Tok>) -> Vec<Instr> {
    if tokens.last() == Some(&Tok::Sep) {
        tokens.extend([Tok::Star, Tok::Star]);
    }
    if tokens.first() == Some(&Tok::Sep) {
        tokens.remove(0);
    }
    let segments: Vec<&[Tok]> = tokens.split(|t| *t == Tok::Sep).collect();
    let mut out = Vec::with_capacity(tokens.len());
    let mut separator_absorbed = true;
    for (i, segment) in segments.iter().enumerate() {
        if !separator_absorbed {
            out.push(Instr::Step(CharSet::single('/')));
        }
        separator_absorbed = false;
        if *segment == [Tok::Star, Tok::Star] {
            if i + 1 == segments.len() {
                out.push(Instr::AnyString);
            } else {
                out.push(Instr::AnyDirs);
                separator_absorbed = true;
            }
            continue;
        }
        for token in *segment {
            let instr = match token {
                Tok::Lit(c) => Instr::Step(CharSet::single(*c)),
                Tok::Any => Instr::Step(CharSet::non_slash()),
                Tok::Class(set) => Instr::Step(set.clone()),
                Tok::Sep => Instr::Step(CharSet::single('/')),
                Tok::Star if out.last() == Some(&Instr::Star) => continue,
                Tok::Star => Instr::Star,
            };
            out.push(instr);
        }
    }
    out
}

/// A trie of instruction sequences, later minimised into a DAG.
struct Trie {
    children: Vec<Vec<(Instr, usize)>>,
    accept: Vec<bool>,
}

impl Trie {
    fn new() -> Self {
        Trie { children: vec![Vec::new()], accept: vec![false] }
    }

    fn insert(&mut self, seq: Vec<Instr>) {
        let mut cur = 0;
        for instr in seq {
            cur = match self.children[cur].iter().find(|(i, _)| *i == instr) {
                Some(&(_, next)) => next,
                None => {
                    let next = self.children.len();
                    self.children.push(Vec::new());
                    self.accept.push(false);
                    self.children[cur].push((instr, next));
                    next
                }
            };
        }
        self.accept[cur] = true;
    }

    /// Merges equivalent trie nodes bottom-up (same acceptance, same labelled children), then
    /// emits the NFA. Children are always created after their parent, so reverse creation order
    /// is a valid bottom-up order.
    fn into_nfa(self) -> Nfa {
        let n = self.children.len();
        let mut canon = vec![0usize; n];
        let mut registry: HashMap<(bool, Vec<(Instr, usize)>), usize> = HashMap::new();
        let mut dag: Vec<(bool, Vec<(Instr, usize)>)> = Vec::new();
        for node in (0..n).rev() {
            let mut sig: Vec<(Instr, usize)> =
                self.children[node].iter().map(|(instr, child)| (instr.clone(), canon[*child])).collect();
            sig.sort_unstable();
            let key = (self.accept[node], sig);
            canon[node] = *registry.entry(key.clone()).or_insert_with(|| {
                dag.push(key);
                dag.len() - 1
            });
        }
        // NFA state 0 must be the root.
        let root = canon[0];
        let id = |d: usize| match d {
            d if d == root => 0,
            d if d < root => d + 1,
            d => d,
        };
        let mut b = Builder::default();
        for _ in 0..dag.len() {
            b.state();
        }
        for (d, (accept, children)) in dag.iter().enumerate() {
            let from = id(d);
            b.accept[from] = *accept;
            for (instr, child) in children {
                let to = id(*child);
                match instr {
                    Instr::Step(set) => b.edge(from, set.clone(), to),
                    Instr::Star | Instr::AnyString => {
                        let set = if *instr == Instr::Star { CharSet::non_slash() } else { CharSet::all() };
                        let run = b.state();
                        b.eps[from].push(run);
                        b.edge(run, set, run);
                        b.eps[run].push(to);
                    }
                    Instr::AnyDirs => {
                        let dirs = b.state();
                        b.eps[from].extend([to, dirs]);
                        b.edge(dirs, CharSet::all(), dirs);
                        b.edge(dirs, CharSet::single('/'), to);
                    }
                }
            }
        }
        b.finish()
    }
}

/// Epsilon-free NFA, all states reachable; state 0 is the start state.
#[derive(Debug, Clone)]
struct Nfa {
    /// Per state: outgoing edges, at most one per target.
    edges: Vec<Vec<(CharSet, usize)>>,
    accept: Vec<bool>,
}

#[derive(Default)]
struct Builder {
    edges: Vec<Vec<(CharSet, usize)>>,
    eps: Vec<Vec<usize>>,
    accept: Vec<bool>,
}

impl Builder {
    fn state(&mut self) -> usize {
        self.edges.push(Vec::new());
        self.eps.push(Vec::new());
        self.accept.push(false);
        self.edges.len() - 1
    }

    fn edge(&mut self, from: usize, set: CharSet, to: usize) {
        self.edges[from].push((set, to));
    }

    /// Removes epsilon moves (each state gets the edges and acceptance of its epsilon closure),
    /// merges parallel edges, and drops states unreachable from state 0.
    fn finish(self) -> Nfa {
        let n = self.edges.len();
        let mut mark = vec![usize::MAX; n];
        let mut stack = Vec::new();
        let mut edges = Vec::with_capacity(n);
        let mut accept = Vec::with_capacity(n);
        for s in 0..n {
            let mut out: Vec<(CharSet, usize)> = Vec::new();
            let mut accepting = false;
            mark[s] = s;
            stack.push(s);
            while let Some(t) = stack.pop() {
                out.extend(self.edges[t].iter().cloned());
                accepting |= self.accept[t];
                for &u in &self.eps[t] {
                    if mark[u] != s {
                        mark[u] = s;
                        stack.push(u);
                    }
                }
            }
            out.sort_unstable_by_key(|(_, target)| *target);
            let mut merged: Vec<(CharSet, usize)> = Vec::with_capacity(out.len());
            for (set, target) in out {
                match merged.last_mut() {
                    Some((last, t)) if *t == target => *last = last.union(&set),
                    _ => merged.push((set, target)),
                }
            }
            edges.push(merged);
            accept.push(accepting);
        }
        // Keep only states reachable from the start, renumbered in discovery order (0 stays 0).
        let mut new_id = vec![usize::MAX; n];
        let mut order = vec![0];
        new_id[0] = 0;
        let mut head = 0;
        while head < order.len() {
            for (_, t) in &edges[order[head]] {
                if new_id[*t] == usize::MAX {
                    new_id[*t] = order.len();
                    order.push(*t);
                }
            }
            head += 1;
        }
        let edges =
            order.iter().map(|&s| edges[s].iter().map(|(set, t)| (set.clone(), new_id[*t])).collect()).collect();
        let accept = order.iter().map(|&s| accept[s]).collect();
        Nfa { edges, accept }
    }
}

struct BitSet(Vec<u64>);

impl BitSet {
    fn contains(&self, k: usize) -> bool {
        self.0[k / 64] & (1 << (k % 64)) != 0
    }

    /// Adds `k`; true if it was not there yet.
    fn insert(&mut self, k: usize) -> bool {
        let fresh = !self.contains(k);
        self.0[k / 64] |= 1 << (k % 64);
        fresh
    }
}

/// Breadth-first search of `a × b × well-formed-path`; returns a shortest common path.
///
/// Product states are `(state of a, state of b, inside a segment?)`, packed into one index for a
/// dense visited bitset; each explored state remembers its predecessor and the char that led to
/// it, from which the witness is rebuilt.
fn product_witness(a: &Nfa, b: &Nfa) -> Option<String> {
    let nb = b.accept.len();
    let key = |sa: usize, sb: usize, in_segment: bool| (sa * nb + sb) * 2 + usize::from(in_segment);
    let mut visited = BitSet(vec![0u64; (a.accept.len() * nb * 2).div_ceil(64)]);
    // (packed state, index of the predecessor in `nodes`, char that led here)
    let mut nodes: Vec<(usize, usize, char)> = vec![(key(0, 0, false), usize::MAX, '\0')];
    visited.insert(nodes[0].0);
    let mut head = 0;
    while head < nodes.len() {
        let packed = nodes[head].0;
        let in_segment = packed % 2 == 1;
        let (sa, sb) = (packed / 2 / nb, packed / 2 % nb);
        if in_segment && a.accept[sa] && b.accept[sb] {
            let mut path = Vec::new();
            let mut i = head;
            while i != 0 {
                path.push(nodes[i].2);
                i = nodes[i].1;
            }
            return Some(path.into_iter().rev().collect());
        }
        for (la, ta) in &a.edges[sa] {
            for (lb, tb) in &b.edges[sb] {
                // A `/` may only end a non-empty segment; the next segment must then be non-empty.
                if in_segment && la.contains('/') && lb.contains('/') && visited.insert(key(*ta, *tb, false)) {
                    nodes.push((key(*ta, *tb, false), head, '/'));
                }
                let next = key(*ta, *tb, true);
                if !visited.contains(next)
                    && let Some(ch) = best_common_non_slash(la, lb)
                {
                    visited.insert(next);
                    nodes.push((next, head, ch));
                }
            }
        }
        head += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::parse(p).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            // literals, `?`, `*`
            ("src/main.rs", "src/main.rs", true),
            ("src/main.rs", "src/main.rsx", false),
            ("src/main.rs", "src/main.r", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("a?c", "ac", false),
            ("*", "", true),
            ("*", "abc", true),
            ("*", "a/b", false),
            ("*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("*.md", ".md", true),
            ("docs/*.md", "docs/a.md", true),
            ("a/*/c", "a/b/c", true),
            ("a/*/c", "a/b/d/c", false),
            ("a/*/c", "a//c", true),
            // `**` as a whole segment
            ("**", "", true),
            ("**", "a", true),
            ("**", "a/b/c.rs", true),
            ("**/x", "x", true),
            ("**/x", "a/x", true),
            ("**/x", "a/b/x", true),
            ("**/x", "ax", false),
            ("**/x", "a/xb", false),
            ("x/**", "x", false),
            ("x/**", "x/", true),
            ("x/**", "x/a", true),
            ("x/**", "x/a/b", true),
            ("x/**", "xa", false),
            ("x/**", "y/x/a", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "ab", false),
            ("a/**/b", "a/xb", false),
            ("a/**/b", "a/x/y/bc", false),
            ("src/**/*.rs", "src/a.rs", true),
            ("src/**/*.rs", "src/api/handlers.rs", true),
            ("src/**/*.rs", "src/a/b/c.rs", true),
            ("src/**/*.rs", "srcx/a.rs", false),
            ("src/**/*.rs", "src/a.ts", false),
            ("**/**", "a/b", true),
            ("**/**/a", "a", true),
            ("**/**/a", "b/c/a", true),
            ("a/**/**", "a", false),
            ("a/**/**", "a/b/c", true),
            // `**` that is not a whole segment is `*`
            ("a**b", "ab", true),
            ("a**b", "axxb", true),
            ("a**b", "a/b", false),
            ("**a", "xa", true),
            ("**a", "x/a", false),
            ("a/**b/c", "a/xb/c", true),
            ("a/**b/c", "a/x/b/c", false),
            ("***", "abc", true),
            ("***", "a/b", false),
            // classes
            ("[abc]x", "bx", true),
            ("[abc]x", "dx", false),
            ("[a-c]x", "cx", true),
            ("[a-c]x", "dx", false),
            ("[!a]x", "bx", true),
            ("[!a]x", "ax", false),
            ("[^a]x", "ax", false),
            ("[^a]x", "zx", true),
            ("[!a]x", "/x", false),
            ("[!a]", "é", true),
            ("[/]", "/", false),
            ("a[/]b", "a/b", false),
            ("[]]", "]", true),
            ("[!]]", "]", false),
            ("[!]]", "a", true),
            ("[a-]", "-", true),
            ("[-a]", "-", true),
            ("[\\]]", "]", true),
            ("[a\\-z]", "-", true),
            ("[a\\-z]", "b", false),
            ("[0-9a-f]", "7", true),
            ("[0-9a-f]", "g", false),
            ("[{]", "{", true),
            ("x[*]", "x*", true),
            ("x[*]", "xy", false),
            // escapes
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("a\\?", "a?", true),
            ("a\\?", "ab", false),
            ("\\[a]", "[a]", true),
            ("\\{a,b\\}", "{a,b}", true),
            ("\\\\", "\\", true),
            ("a\\/b", "a/b", true),
            // braces
            ("{web,app}/**", "app/main.ts", true),
            ("{web,app}/**", "web/a/b", true),
            ("{web,app}/**", "lib/x", false),
            ("web/{app,lib}/**", "web/lib/x.ts", true),
            ("web/{app,lib}/**", "web/other/x.ts", false),
            ("*.{rs,toml}", "Cargo.toml", true),
            ("*.{rs,toml}", "main.rs", true),
            ("*.{rs,toml}", "main.ts", false),
            ("{a,{b,c}}d", "cd", true),
            ("{a,{b,c}}d", "ad", true),
            ("{a,{b,c}}d", "dd", false),
            ("{a,}x", "x", true),
            ("{a,}x", "ax", true),
            ("{}x", "x", true),
            ("{[,],x}", ",", true),
            ("{[,],x}", "x", true),
            ("{**/*.md,docs/**}", "a/b.md", true),
            ("{src,lib}/**/*.{rs,toml}", "lib/a/b.toml", true),
            ("{*,**}/x", "a/b/x", true),
            ("a,b", "a,b", true),
            // trailing and leading `/`
            ("docs/", "docs/a.md", true),
            ("docs/", "docs/a/b.md", true),
            ("docs/", "docs", false),
            ("/src/*.rs", "src/a.rs", true),
            ("/", "a/b", true),
        ];
        let mut failures = Vec::new();
        for &(pattern, path, expected) in cases {
            if glob(pattern).matches(path) != expected {
                failures.push(format!("{pattern:?} matches {path:?}: expected {expected}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn intersects_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("src/**/*.rs", "src/api/handlers.rs", true),
            ("src/**/*.rs", "src/**/*.ts", false),
            ("*.md", "docs/*.md", false),
            ("docs/**", "**/*.md", true),
            ("a/*/c", "a/b*/c", true),
            ("[a-c]x", "[d-f]x", false),
            ("[a-c]x", "[c-f]x", true),
            ("[!a]x", "ax", false),
            ("[!a]x", "?x", true),
            ("[!a-z]", "[a-z]", false),
            ("{web,app}/**", "app/main.ts", true),
            ("{web,app}/**", "lib/main.ts", false),
            ("x/**", "x", false),
            ("x/**", "x/", true),
            ("x/**", "x/*", true),
            ("{x,x/**}", "x", true),
            ("**", "a/b/c.rs", true),
            ("**", "**", true),
            ("**", "*", true),
            ("**", "?", true),
            ("**", "[!a-z]", true),
            ("a?c", "a/c", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**", "b/**", false),
            ("*", "*/*", false),
            ("**/a", "b", false),
            ("**/a", "b/**", true),
            ("src/api/", "src/**/*.rs", true),
            ("src/api/", "src/api", false),
            ("docs/*.md", "docs/**/README.md", true),
            ("*/a", "b/*", true),
            ("*/*", "*/*/*", false),
            ("a*", "*b", true),
            ("a*", "b*", false),
            ("*.rs", "*.ts", false),
            ("*.rs", "main.*", true),
            // only malformed strings in common: not a file overlap
            ("a/*/b", "a//b", false),
            ("x/*", "x/", true),
            ("x\\*", "x?", true),
            ("x\\*", "x[!*]", false),
        ];
        let mut failures = Vec::new();
        for &(x, y, expected) in cases {
            let (gx, gy) = (glob(x), glob(y));
            for (l, r) in [(&gx, &gy), (&gy, &gx)] {
                if l.intersects(r) != expected {
                    failures.push(format!("{} ∩ {}: expected {expected}", l.pattern(), r.pattern()));
                }
                if let Some(w) = l.common_path(r)
                    && !(l.matches(&w) && r.matches(&w) && well_formed(&w))
                {
                    failures.push(format!("{} ∩ {}: bad witness {w:?}", l.pattern(), r.pattern()));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn witnesses_are_short_and_readable() {
        let cases: &[(&str, &str, &str)] = &[
            ("a/*/c", "a/b*/c", "a/b/c"),
            ("**", "**", "x"),
            ("src/**/*.rs", "src/api/handlers.rs", "src/api/handlers.rs"),
            ("src/**/*.rs", "src/api/*", "src/api/.rs"),
            ("{web,app}/**", "app/main.ts", "app/main.ts"),
            ("docs/**", "**/*.md", "docs/.md"),
            ("x/**", "x/*", "x/x"),
            ("[!a]", "[!x]", "b"),
            ("[A-Z]", "?", "A"),
            ("[0-9]", "*", "0"),
            ("[!a-zA-Z0-9]", "*", "!"),
        ];
        for &(x, y, expected) in cases {
            assert_eq!(glob(x).common_path(&glob(y)).as_deref(), Some(expected), "{x} ∩ {y}");
        }
    }

    #[test]
    fn first_overlap_finds_the_first_pair() {
        let a = [glob("docs/*.md"), glob("src/api/**")];
        let b = [glob("web/**"), glob("src/**/*.rs"), glob("**/*.md")];
        let (x, y, witness) = first_overlap(&a, &b).expect("overlap");
        assert_eq!((x.pattern(), y.pattern()), ("docs/*.md", "**/*.md"));
        assert!(x.matches(&witness) && y.matches(&witness));
        assert!(first_overlap(&a[..1], &b[..2]).is_none());
        assert!(first_overlap(&[], &b).is_none());
    }

    #[test]
    fn errors() {
        let too_many = "{a,b}".repeat(9); // 512 alternatives
        let nested_too_many = format!("{{{}}}", (0..300).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
        let too_long = format!("{}{}", "{a,b}".repeat(8), "x".repeat(1100)); // 256 × 1108 chars
        let too_complex =
            format!("{{{}}}", (0..256).map(|i| format!("{i:03}x{i:03}y{i:03}z{i:03}")).collect::<Vec<_>>().join(","));
        let deep = format!("{}a{}", "{".repeat(40), "}".repeat(40));
        let cases: Vec<(&str, &str)> = vec![
            ("", "empty"),
            ("[abc", "unclosed `[`"),
            ("a[", "unclosed `[`"),
            ("[]", "unclosed `[`"),
            ("[!]", "unclosed `[`"),
            ("[a\\]", "unclosed `[`"),
            ("{a,b", "unclosed `{`"),
            ("{a,{b}", "unclosed `{`"),
            ("x/{a,[}]", "unclosed `{`"),
            ("a}", "unmatched `}`"),
            ("{a}}", "unmatched `}`"),
            ("a\\", "dangling"),
            ("[z-a]", "invalid range"),
            (&too_many, "more than 256 alternatives"),
            (&nested_too_many, "more than 256 alternatives"),
            (&too_long, "characters"),
            (&deep, "nested deeper"),
            (&too_complex, "too complex"),
        ];
        for (pattern, needle) in cases {
            let err = Glob::parse(pattern).err().unwrap_or_else(|| panic!("{pattern:?} should not parse"));
            assert_eq!(err.pattern, pattern);
            assert!(err.message.contains(needle), "{pattern:?}: {}", err.message);
            assert!(err.to_string().contains(needle));
        }
        // Exactly at the cap is fine.
        let g = glob(&"{a,b}".repeat(8));
        assert!(g.matches("abababab"));
        // 256 alternatives sharing a long suffix compile to a small automaton.
        let suffix = "/x".repeat(240) + "/*.rs";
        let g = glob(&format!("{}{suffix}", "{a,b}".repeat(8)));
        assert!(g.nfa.accept.len() < 600, "{} states", g.nfa.accept.len());
        assert!(g.matches(&format!("bbbbaaaa{}/main.rs", "/x".repeat(240))));
        assert!(!g.matches(&format!("bbbbaaaa{}/main.ts", "/x".repeat(240))));
        assert!(g.intersects(&glob("**/main.*")));
        assert!(!g.intersects(&glob(&format!("{}{suffix}", "{c,d}".repeat(8)))));
        assert!(Glob::from_str("{a,b}/x").is_ok());
    }

    #[test]
    fn charset_operations() {
        let set = CharSet::from_ranges(vec![('d', 'f'), ('a', 'b'), ('c', 'c'), ('x', 'x')]);
        assert_eq!(set, CharSet(vec![('a', 'f'), ('x', 'x')]));
        let comp = set.complement();
        assert_eq!(comp, CharSet(vec![('\0', '`'), ('g', 'w'), ('y', char::MAX)]));
        assert_eq!(comp.complement(), set);
        assert_eq!(CharSet::all().complement(), CharSet(vec![]));
        let around_gap = CharSet::from_ranges(vec![('\u{D000}', '\u{D7FF}'), ('\u{E000}', '\u{E001}')]);
        assert_eq!(around_gap, CharSet(vec![('\u{D000}', '\u{E001}')]));
        assert!(!CharSet::non_slash().contains('/'));
        assert!(CharSet::non_slash().contains('.') && CharSet::non_slash().contains('0'));
        assert_eq!(best_common_non_slash(&CharSet::all(), &CharSet::single('/')), None);
        assert_eq!(best_common_non_slash(&CharSet::all(), &CharSet::all()), Some('x'));
    }

    // -----------------------------------------------------------------------------------------
    // Randomized cross-check against an independent, segment-level reference matcher and an
    // exhaustive enumeration of short well-formed paths over {a, b, /}.

    fn well_formed(p: &str) -> bool {
        !p.is_empty() && p.split('/').all(|s| !s.is_empty())
    }

    /// splitmix64
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[derive(Debug, Clone)]
    enum Atom {
        Lit(char),
        Any,
        Star,
        /// `**` inside a segment with other atoms: behaves like `*`.
        InlineStarStar,
        /// `\*`: a literal `*`.
        EscapedStar,
        Class {
            negated: bool,
            members: &'static [char],
            text: &'static str,
        },
    }

    #[derive(Debug, Clone)]
    enum Seg {
        Recursive,
        Atoms(Vec<Atom>),
    }

    #[derive(Debug, Clone)]
    struct RefPattern {
        segs: Vec<Seg>,
        leading_slash: bool,
        trailing_slash: bool,
    }

    fn render_atoms(atoms: &[Atom]) -> String {
        atoms
            .iter()
            .map(|a| match a {
                Atom::Lit(c) => c.to_string(),
                Atom::Any => "?".to_string(),
                Atom::Star => "*".to_string(),
                Atom::InlineStarStar => "**".to_string(),
                Atom::EscapedStar => "\\*".to_string(),
                Atom::Class { negated, text, .. } => format!("[{}{text}]", if *negated { "!" } else { "" }),
            })
            .collect()
    }

    impl RefPattern {
        fn render(&self) -> String {
            let body: Vec<String> = self
                .segs
                .iter()
                .map(|s| match s {
                    Seg::Recursive => "**".to_string(),
                    Seg::Atoms(atoms) => render_atoms(atoms),
                })
                .collect();
            format!(
                "{}{}{}",
                if self.leading_slash { "/" } else { "" },
                body.join("/"),
                if self.trailing_slash { "/" } else { "" }
            )
        }

        /// Reference semantics on a well-formed path, stated at the segment level: a `**` segment
        /// matches zero or more whole path segments, except a trailing `**` after another segment
        /// (`x/**`), which matches one or more; a trailing `/` adds a `**` segment.
        fn matches(&self, path: &str) -> bool {
            let mut segs = self.segs.clone();
            if self.trailing_slash {
                segs.push(Seg::Recursive);
            }
            let path: Vec<Vec<char>> = path.split('/').map(|s| s.chars().collect()).collect();
            ref_segments(&segs, 0, &path)
        }
    }

    fn ref_segments(segs: &[Seg], first: usize, path: &[Vec<char>]) -> bool {
        let Some((seg, rest)) = segs.split_first() else { return path.is_empty() };
        match seg {
            Seg::Recursive => {
                let min = usize::from(rest.is_empty() && first > 0);
                (min..=path.len()).any(|k| ref_segments(rest, first + 1, &path[k..]))
            }
            Seg::Atoms(atoms) => {
                !path.is_empty() && ref_segment(atoms, &path[0]) && ref_segments(rest, first + 1, &path[1..])
            }
        }
    }

    fn ref_segment(atoms: &[Atom], s: &[char]) -> bool {
        let Some((atom, rest)) = atoms.split_first() else { return s.is_empty() };
        match atom {
            Atom::Star | Atom::InlineStarStar => (0..=s.len()).any(|k| ref_segment(rest, &s[k..])),
            _ => {
                let Some((&c, tail)) = s.split_first() else { return false };
                let ok = match atom {
                    Atom::Lit(l) => c == *l,
                    Atom::EscapedStar => c == '*',
                    Atom::Any => true,
                    Atom::Class { negated, members, .. } => members.contains(&c) != *negated,
                    Atom::Star | Atom::InlineStarStar => unreachable!(),
                };
                ok && ref_segment(rest, tail)
            }
        }
    }

    fn random_pattern(rng: &mut Rng) -> RefPattern {
        const CLASSES: [(&[char], &str); 4] = [(&['a', 'b'], "ab"), (&['a'], "a"), (&['b'], "b"), (&['a', 'b'], "a-b")];
        let nsegs = 1 + rng.below(3);
        let mut segs = Vec::new();
        for _ in 0..nsegs {
            if rng.below(4) == 0 {
                segs.push(Seg::Recursive);
                continue;
            }
            let natoms = 1 + rng.below(3);
            let mut atoms: Vec<Atom> = (0..natoms)
                .map(|_| match rng.below(20) {
                    0..=5 => Atom::Lit('a'),
                    6..=9 => Atom::Lit('b'),
                    10 | 11 => Atom::Any,
                    12..=14 => Atom::Star,
                    15 => Atom::InlineStarStar,
                    16 => Atom::EscapedStar,
                    _ => {
                        let (members, text) = CLASSES[rng.below(CLASSES.len())];
                        Atom::Class { negated: rng.below(2) == 0, members, text }
                    }
                })
                .collect();
            if render_atoms(&atoms) == "**" {
                atoms.push(Atom::Lit('a'));
            }
            segs.push(Seg::Atoms(atoms));
        }
        RefPattern { segs, leading_slash: rng.below(10) == 0, trailing_slash: rng.below(8) == 0 }
    }

    /// A random path the reference pattern matches (any length), or `None` if the draw was not a
    /// well-formed path (e.g. a segment of only empty stars).
    fn sample_path(rng: &mut Rng, pattern: &RefPattern) -> Option<String> {
        const CHARS: [char; 3] = ['a', 'b', 'x'];
        let mut segs = pattern.segs.clone();
        if pattern.trailing_slash {
            segs.push(Seg::Recursive);
        }
        let last = segs.len() - 1;
        let mut out: Vec<String> = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            match seg {
                Seg::Recursive => {
                    let min = usize::from(i == last && i > 0);
                    for _ in 0..min + rng.below(3) {
                        out.push((0..1 + rng.below(2)).map(|_| CHARS[rng.below(3)]).collect());
                    }
                }
                Seg::Atoms(atoms) => {
                    let mut seg = String::new();
                    for atom in atoms {
                        match atom {
                            Atom::Lit(c) => seg.push(*c),
                            Atom::EscapedStar => seg.push('*'),
                            Atom::Any => seg.push(CHARS[rng.below(3)]),
                            Atom::Star | Atom::InlineStarStar => {
                                seg.extend((0..rng.below(3)).map(|_| CHARS[rng.below(3)]));
                            }
                            Atom::Class { negated, members, .. } => {
                                let allowed: Vec<char> =
                                    CHARS.into_iter().filter(|c| members.contains(c) != *negated).collect();
                                seg.push(allowed[rng.below(allowed.len())]);
                            }
                        }
                    }
                    out.push(seg);
                }
            }
        }
        let path = out.join("/");
        well_formed(&path).then_some(path)
    }

    /// Every well-formed path over {a, b, x, /} of length 1..=max_len, shortest first. (`x` is the
    /// witness builder's favourite char; `a`/`b` are what the random patterns mention.)
    fn universe(max_len: usize) -> Vec<String> {
        let mut all = Vec::new();
        let mut layer = vec![String::new()];
        for _ in 0..max_len {
            layer = layer
                .iter()
                .flat_map(|p| ['a', 'b', 'x', '/'].map(|c| format!("{p}{c}")))
                .filter(|p| !p.starts_with('/') && !p.contains("//"))
                .collect();
            all.extend(layer.iter().filter(|p| well_formed(p)).cloned());
        }
        all
    }

    fn bitset(bits: impl Iterator<Item = bool>) -> Vec<u64> {
        let mut words = Vec::new();
        for (i, bit) in bits.enumerate() {
            if i % 64 == 0 {
                words.push(0);
            }
            if bit && let Some(w) = words.last_mut() {
                *w |= 1 << (i % 64);
            }
        }
        words
    }

    fn first_common(a: &[u64], b: &[u64]) -> Option<usize> {
        a.iter().zip(b).enumerate().find_map(|(i, (x, y))| {
            let both = x & y;
            (both != 0).then(|| i * 64 + both.trailing_zeros() as usize)
        })
    }

    /// For random globs over a tiny alphabet:
    /// * `matches` agrees with the independent segment-level reference on every enumerated path;
    /// * every witness is a well-formed path both references accept (soundness, at any length);
    /// * if some enumerated path matches both, `common_path` finds one no longer than the shortest
    ///   such path (completeness up to the bound), and a witness that is itself enumerable has
    ///   exactly the brute-force shortest length (minimality);
    /// * beyond the bound, completeness is probed by sampling: random paths drawn from one pattern
    ///   that the other's reference accepts must be found (with a witness no longer than them).
    #[test]
    fn randomized_cross_check() {
        const MAX_LEN: usize = 7;
        const GLOBS: usize = 120;
        let paths = universe(MAX_LEN);
        let in_universe = |w: &str| w.chars().count() <= MAX_LEN && w.chars().all(|c| "abx/".contains(c));
        let mut rng = Rng(0x5EED_F00D_6C0B);
        let mut globs = Vec::new();
        let mut sets = Vec::new();
        for _ in 0..GLOBS {
            let reference = random_pattern(&mut rng);
            let text = reference.render();
            let g = glob(&text);
            let expected: Vec<bool> = paths.iter().map(|p| reference.matches(p)).collect();
            for (p, &e) in paths.iter().zip(&expected) {
                assert_eq!(g.matches(p), e, "{text:?} on {p:?} (reference: {reference:?})");
            }
            sets.push(bitset(expected.into_iter()));
            let samples: Vec<String> = (0..40).filter_map(|_| sample_path(&mut rng, &reference)).collect();
            for sample in &samples {
                assert!(reference.matches(sample) && g.matches(sample), "{text:?} should match sample {sample:?}");
            }
            globs.push((reference, g, samples));
        }
        let (mut overlapping, mut disjoint, mut long_witness, mut sampled_common) = (0, 0, 0, 0);
        for i in 0..GLOBS {
            for j in i..GLOBS {
                let ((ra, ga, sa), (rb, gb, sb)) = (&globs[i], &globs[j]);
                let why = format!("{} ∩ {}", ga.pattern(), gb.pattern());
                let shortest = first_common(&sets[i], &sets[j]).map(|k| paths[k].chars().count());
                let witness = ga.common_path(gb);
                let reverse = gb.common_path(ga);
                assert_eq!(witness.as_ref().map(String::len), reverse.as_ref().map(String::len), "{why}: symmetry");
                match &witness {
                    Some(w) => {
                        assert!(well_formed(w), "{why}: {w:?}");
                        assert!(ra.matches(w) && rb.matches(w), "{why}: reference rejects {w:?}");
                        assert!(ga.matches(w) && gb.matches(w), "{why}: {w:?}");
                        overlapping += 1;
                        if in_universe(w) {
                            assert_eq!(shortest, Some(w.chars().count()), "{why}: {w:?}");
                        } else if !w.contains('*') {
                            long_witness += 1;
                        }
                    }
                    None => disjoint += 1,
                }
                let found = witness.as_ref().map(|w| w.chars().count());
                if let Some(n) = shortest {
                    assert!(found.is_some_and(|m| m <= n), "{why}: brute force finds length {n}, got {witness:?}");
                }
                let sampled = sa.iter().filter(|p| rb.matches(p)).chain(sb.iter().filter(|p| ra.matches(p)));
                for p in sampled {
                    sampled_common += 1;
                    let n = p.chars().count();
                    assert!(found.is_some_and(|m| m <= n), "{why}: both match sample {p:?}, got {witness:?}");
                }
            }
        }
        assert!(overlapping > 1000 && disjoint > 1000, "weak sample: {overlapping} overlapping, {disjoint} disjoint");
        // Witnesses with a literal `*` (from `\*`) are outside the enumerated alphabet by design;
        // witnesses longer than the bound should be rare, or the completeness check is weak.
        assert!(long_witness < overlapping / 5, "{long_witness} witnesses longer than {MAX_LEN}");
        assert!(sampled_common > 10_000, "only {sampled_common} sampled common paths");
    }
}
