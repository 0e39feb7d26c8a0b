//! Overlap detection without I/O: what makes two pieces of work the same (`duplicate`), merely
//! near each other (`related`), or unrelated. Signals: embedding cosines (computed elsewhere and
//! passed in), rarity-weighted lexical overlap, what differs between the two texts (a swapped
//! environment, service, language, provider, version or endpoint is a different object), and
//! whether their declared path globs can match a common file (exactly).

pub mod calibrate;
pub mod features;
pub mod fit;
pub mod glob;
pub mod model;
pub mod text;
pub mod thesaurus;

pub use features::{
    Feature, ItemText, PairFeatures, PathRelation, Signals, WordVectors, content_words, doc_subject, doc_titles,
    path_relation,
};
pub use model::{Relation, ScorerModel, Verdict, shipped_for};
