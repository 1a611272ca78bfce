//! The messages about which model runs: where its bytes come from ([`ModelSource`]), the list
//! the page shows ([`ModelEntry`]), and the check made from a GGUF's header before its weights
//! are fetched ([`ModelCheck`]).

use engine::runtime::budget::{ModelSummary, Plan, Tier};
use serde::{Deserialize, Serialize};

/// Where a model's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelSource {
    /// The manifest's default model (`chat` in `www/models/manifest.json`).
    Default,
    /// A model known by its sha256: one of the manifest's, a verified copy stored in this
    /// browser, or else downloaded from `url` and checked against the sha256. Deep links name
    /// models this way.
    Sha { sha256: String, url: Option<String> },
    /// A GGUF at a URL the user gave; checked against `sha256` when they gave one, else its
    /// sha256 is learned from the bytes (and names it from then on).
    Url { url: String, sha256: Option<String> },
    /// A file the user opened (the `File` itself travels beside the message, never through
    /// JSON; its bytes never leave the machine). `keep`: store a copy in this browser.
    Disk {
        name: String,
        bytes: u64,
        keep: bool,
    },
}

/// Requests about models, whichever is loaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ModelRequest {
    /// The manifest's models and those stored in this browser, with what is known of each;
    /// answered by [`ModelReply::List`].
    List,
    /// Reads the model's header (a file's first bytes; a URL's with Range requests, growing the
    /// range until the header is whole), and plans its memory on each tier; nothing is stored.
    /// Answered by [`ModelReply::Checked`].
    Check { request: u32, source: ModelSource },
    /// Deletes a stored model (its file, marker and list entry).
    Forget { sha256: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ModelReply {
    List(Vec<ModelEntry>),
    Checked {
        request: u32,
        result: Result<Box<ModelCheck>, String>,
    },
}

/// One model of the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub sha256: String,
    /// The manifest's name, or the name the file or URL gave.
    pub name: String,
    pub bytes: u64,
    /// Listed in the manifest (shipped with the page).
    pub bundled: bool,
    /// The manifest's default model.
    pub default: bool,
    /// The licence text shipped beside the model, as a URL relative to the page.
    pub licence_url: Option<String>,
    /// A verified copy is stored in this browser.
    pub stored: bool,
    /// Where a model the user added came from, when it was a URL.
    pub url: Option<String>,
    /// What its header says, once it has been read (checked, loaded or stored).
    pub summary: Option<ModelSummary>,
}

impl ModelEntry {
    pub fn source(&self) -> ModelSource {
        ModelSource::Sha {
            sha256: self.sha256.clone(),
            url: self.url.clone(),
        }
    }
}

/// What a model's header says, and what will work here, before its weights are fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCheck {
    /// What to load if the user goes on.
    pub source: ModelSource,
    pub name: String,
    pub bytes: u64,
    /// The sha256 the bytes must have, where one is known before they arrive.
    pub sha256: Option<String>,
    pub licence_url: Option<String>,
    pub summary: ModelSummary,
    /// Memory per tier at [`ModelCheck::context`] (none when the model cannot run at all).
    pub plan: Option<Plan>,
    /// What will happen, in words: the tier and context, or why the model cannot run.
    pub verdict: String,
    /// The tier it would load on now (`None`: it does not run in this browser).
    pub tier: Option<Tier>,
    /// The context the page gives it (its own, capped at the page's and at what fits).
    pub context: usize,
    /// A verified copy is stored here: nothing will be downloaded.
    pub stored: bool,
}
