//! The model list and the model check: which models there are (the manifest's, then those the
//! user added and stored here), what their headers say, and, before any weight is fetched,
//! whether a model runs in this browser, on which tier and with how long a context.

use super::probe::{self, Probed};
use super::store::{self, short_hash, LoadError, Manifest, Origin, Store, Target};
use super::{post, Worker};
use crate::protocol::{ModelCheck, ModelEntry, ModelReply, ModelRequest, ModelSource, TierChoice};
use engine::runtime::budget::ModelSummary;

impl Worker {
    pub(super) async fn on_models(&mut self, request: ModelRequest, file: Option<web_sys::File>) {
        match request {
            ModelRequest::List => self.list().await,
            ModelRequest::Check { request, source } => {
                self.stop.set(false);
                let result = self.check(&source, file).await;
                post(ModelReply::Checked {
                    request,
                    result: result.map(Box::new).map_err(|e| e.message),
                });
            }
            ModelRequest::Forget { sha256 } => {
                let lock = self.lock_store(false).await;
                Store::open().await.forget(&sha256).await;
                drop(lock);
                self.list().await;
            }
        }
    }

    /// Posts the list: the manifest's models (the default first), then the stored ones the
    /// user added. What a header says is known once it was read: loaded, checked, or stored
    /// here (a stored copy's header is read from the storage, never the network).
    pub(super) async fn list(&mut self) {
        let store = Store::open().await;
        let Ok(manifest) = store::fetch_manifest(&store).await else {
            post(ModelReply::List(Vec::new()));
            return;
        };
        let mut entries = Vec::new();
        for (i, file) in manifest.all().enumerate() {
            let stored = store.has_verified(&file.file, file.bytes).await;
            let summary = self
                .summary_of(
                    &store,
                    &file.sha256,
                    stored.then_some(&file.file),
                    file.bytes,
                )
                .await;
            entries.push(ModelEntry {
                sha256: file.sha256.clone(),
                name: file.name.clone(),
                bytes: file.bytes,
                bundled: true,
                default: i == 0,
                licence_url: file.licence_url(),
                stored,
                url: None,
                summary,
            });
        }
        for model in store.index().await {
            if manifest.find(&model.sha256).is_some() {
                continue;
            }
            let stored = store.has_verified(&model.storage, model.bytes).await;
            entries.push(ModelEntry {
                summary: model
                    .summary
                    .clone()
                    .or_else(|| self.summaries.get(&model.sha256).cloned()),
                sha256: model.sha256,
                name: model.name,
                bytes: model.bytes,
                bundled: false,
                default: false,
                licence_url: None,
                stored,
                url: model.url,
            });
        }
        post(ModelReply::List(entries));
    }

    /// What a model's header says, if it was read (or can be, from a stored copy).
    async fn summary_of(
        &mut self,
        store: &Store,
        sha256: &str,
        storage: Option<&String>,
        bytes: u64,
    ) -> Option<ModelSummary> {
        if let Some(summary) = self.summaries.get(sha256) {
            return Some(summary.clone());
        }
        let probed = probe::from_storage(store, storage?, bytes).await.ok()?;
        let summary = ModelSummary::from_header(&probed.header);
        self.summaries.insert(sha256.to_string(), summary.clone());
        Some(summary)
    }

    /// Reads the model's header and plans its memory; nothing is stored.
    async fn check(
        &mut self,
        source: &ModelSource,
        file: Option<web_sys::File>,
    ) -> Result<ModelCheck, LoadError> {
        let store = Store::open().await;
        let manifest = store::fetch_manifest(&store).await?;
        let (target, probed) = self.resolve(&store, &manifest, source, file).await?;
        let stored = match &target.storage {
            Some(storage) => store.has_verified(storage, target.bytes).await,
            None => false,
        };
        let probed = match probed {
            Some(probed) => probed,
            None if stored => {
                let storage = target.storage.as_deref().unwrap_or_default();
                probe::from_storage(&store, storage, target.bytes).await?
            }
            None => match &target.origin {
                Origin::Url(url) if url.is_empty() => {
                    return Err(LoadError::new(
                        "its stored copy is gone, and it came from a file: open the file again",
                        false,
                    ))
                }
                Origin::Url(url) => probe::from_url(url, &self.stop).await?,
                Origin::Disk(file) => probe::from_file(file, &self.stop).await?,
            },
        };
        let limits = probe::device_limits(self.gpu_limits).await;
        let choice = if self.gpu_limits.is_some() {
            TierChoice::Auto
        } else {
            TierChoice::Cpu
        };
        let assessment = probe::assess(&probed.header, &limits, choice);
        if let Some(sha256) = &target.sha256 {
            self.summaries
                .insert(sha256.clone(), assessment.summary.clone());
        }
        let name = match (
            manifest.find(target.sha256.as_deref().unwrap_or_default()),
            probed.header.get_str("general.name"),
        ) {
            (Some(file), _) => file.name.clone(),
            (None, Ok(name)) => name.to_string(),
            (None, Err(_)) => target.name.clone(),
        };
        let mut verdict = assessment.verdict;
        if assessment.tier.is_some() {
            verdict.push(' ');
            verdict.push_str(&match (&target.origin, stored) {
                (_, true) => {
                    "A verified copy is stored in this browser: nothing is downloaded.".to_string()
                }
                (Origin::Disk(_), false) => {
                    "It is read from your disk; nothing leaves this machine.".to_string()
                }
                (Origin::Url(_), false) => {
                    format!("Loading it downloads {:.1} MB.", target.bytes as f64 / 1e6)
                }
            });
        }
        self.checked = Some((source.clone(), target.clone()));
        Ok(ModelCheck {
            source: source.clone(),
            name,
            bytes: target.bytes,
            sha256: target.sha256.clone(),
            licence_url: target.licence_url.clone(),
            summary: assessment.summary,
            plan: assessment.plan,
            verdict,
            tier: assessment.tier,
            context: assessment.context,
            stored,
        })
    }

    /// Where `source`'s bytes are. A new URL's header is read here already (its size is needed
    /// first); it comes back so that nobody reads it twice.
    pub(super) async fn resolve(
        &mut self,
        store: &Store,
        manifest: &Manifest,
        source: &ModelSource,
        file: Option<web_sys::File>,
    ) -> Result<(Target, Option<Probed>), LoadError> {
        match source {
            ModelSource::Default => Ok((manifest.chat.target(), None)),
            ModelSource::Sha { sha256, url } => match (known(store, manifest, sha256).await, url) {
                (Some(mut target), Some(url)) => {
                    if target.url().is_some_and(str::is_empty) {
                        target.origin = Origin::Url(probe::check_origin(url).await?);
                    }
                    Ok((target, None))
                }
                (Some(target), None) => Ok((target, None)),
                (None, Some(url)) => self.url_target(url, Some(sha256.clone())).await,
                (None, None) => Err(LoadError::new(
                    format!(
                        "the link asks for the model with sha256 {}…, which is not stored in \
                         this browser: open its file (\"Open a GGUF file\") or its URL, or load \
                         the default model",
                        &sha256[..sha256.len().min(12)]
                    ),
                    false,
                )),
            },
            ModelSource::Url { url, sha256 } => {
                if let Some(sha256) = sha256 {
                    if let Some(target) = known(store, manifest, sha256).await {
                        return Ok((target, None));
                    }
                }
                self.url_target(url, sha256.clone()).await
            }
            ModelSource::Disk { name, bytes, keep } => {
                let file = file.ok_or_else(|| {
                    LoadError::new("the file did not reach the engine: open it again", false)
                })?;
                let key = format!("{name}|{bytes}|{}", file.last_modified());
                Ok((
                    Target {
                        name: name.clone(),
                        storage: keep.then(|| format!("file-{}.gguf", short_hash(&key))),
                        origin: Origin::Disk(file),
                        bytes: *bytes,
                        sha256: None,
                        licence_url: None,
                    },
                    None,
                ))
            }
        }
    }

    /// A model at a URL the user gave: its header read (for its size), its origin checked.
    async fn url_target(
        &mut self,
        url: &str,
        sha256: Option<String>,
    ) -> Result<(Target, Option<Probed>), LoadError> {
        let href = probe::check_origin(url).await?;
        let probed = probe::from_url(&href, &self.stop).await?;
        let name = href
            .split(['?', '#'])
            .next()
            .and_then(|path| path.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .unwrap_or("model.gguf")
            .to_string();
        let target = Target {
            name,
            storage: Some(format!("url-{}.gguf", short_hash(&href))),
            origin: Origin::Url(href),
            bytes: probed.bytes,
            sha256,
            licence_url: None,
        };
        Ok((target, Some(probed)))
    }
}

/// A model known by its sha256: one of the manifest's, or one stored here.
async fn known(store: &Store, manifest: &Manifest, sha256: &str) -> Option<Target> {
    if let Some(model) = manifest.find(sha256) {
        return Some(model.target());
    }
    store
        .index()
        .await
        .into_iter()
        .find(|m| m.sha256 == sha256)
        .map(|m| m.target())
}
