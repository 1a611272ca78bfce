//! Deep links: what a view shows, written in the page's query string, so that a link (or an
//! `<iframe>` in a course page) reopens the same picture once the model has loaded.
//!
//! | Parameter | Meaning |
//! |---|---|
//! | `view` | `chat`, `order`, `explore`, `vision` or `lab` |
//! | `embed=1`, `figure` | embed mode: only that figure (see [`Figure`]) and its controls |
//! | `text` | explore: free text to inspect |
//! | `chat` | explore: a conversation, JSON `[["user", "…"], ["assistant", "…"], …]` |
//! | `question`, `option` (repeated), `mode` | order view (and explore, with `source=order`): `mode=set` or `plain` |
//! | `layer`, `head`, `token` | the selected layer, head and (explore) token; (lab) the head whose attention is shown |
//! | `prompt`, `ablate` | lab: the ablation's prompt, the ablated heads `LAYER:HEAD,…` |
//! | `clean`, `corrupt` | lab: the patching sweep's prompts |
//! | `dla_target` | lab: the token id whose logit the attribution splits (absent: the most likely) |
//! | `policy` | chat: the attention policy, `lambda:START,WINDOW` or `budget:TOKENS` (absent: none) |
//! | `precision` | lab: the outlier run shown, `f32`, `q8` (8-bit per block) or `int8` (outliers kept wide) |
//! | `digit` | vision: a test digit, 0–999 |
//! | `drawing` | vision: a drawing, 784 pixels as hex bytes |
//! | `form`, `chunk` | vision: the ViR form shown (`parallel`, `recurrent`, `chunkwise`), chunk length |
//! | `map` | vision: `head` or `rollout` for the ViT picture |
//! | `model`, `model_url` | the chat model, by sha256 (64 hex digits; a bundled model, or one stored in this browser), and where to fetch it otherwise |
//!
//! Parsing and writing are plain string code, tested natively; the query string's own encoding
//! is in [`crate::query_string`].

use crate::protocol::InspectSource;
pub use crate::query_string::to_hex;
use crate::query_string::{encode_component, from_hex, parse_query};
use engine::runtime::AttentionPolicy;
use engine::text::chat::ChatMessage;

/// The page's views (tabs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Chat,
    /// Order-invariant prompting (Set-Based Prompting).
    Order,
    /// The attention explorer.
    Explore,
    /// The MNIST ViT and ViR.
    Vision,
    /// Interventions: head ablation and activation patching.
    Lab,
}

impl View {
    pub fn name(self) -> &'static str {
        match self {
            View::Chat => "chat",
            View::Order => "order",
            View::Explore => "explore",
            View::Vision => "vision",
            View::Lab => "lab",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            View::Chat,
            View::Order,
            View::Explore,
            View::Vision,
            View::Lab,
        ]
        .into_iter()
        .find(|v| v.name() == s)
    }
}

/// The figures embed mode can show alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Explorer: one head's attention matrix.
    Matrix,
    /// Explorer: attention rollout.
    Rollout,
    /// Explorer: the model view (every head).
    Heads,
    /// Vision: the ViT's class-token attention (or rollout) over the digit.
    Vit,
    /// Vision: the ViR's decay matrix and class-token retention.
    Vir,
    /// Order view: the answers under each ordering, with the mask.
    Order,
    /// Lab: head ablation (the next token before and after, and a head's attention).
    Ablation,
    /// Lab: the activation-patching sweep's heatmap.
    Patching,
    /// Lab: direct logit attribution (layers × heads, and the MLPs).
    Attribution,
    /// Lab: outlier features (layers × residual dimensions) and the precision runs.
    Outliers,
}

impl Figure {
    pub const ALL: [Figure; 10] = [
        Figure::Matrix,
        Figure::Rollout,
        Figure::Heads,
        Figure::Vit,
        Figure::Vir,
        Figure::Order,
        Figure::Ablation,
        Figure::Patching,
        Figure::Attribution,
        Figure::Outliers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Figure::Matrix => "matrix",
            Figure::Rollout => "rollout",
            Figure::Heads => "heads",
            Figure::Vit => "vit",
            Figure::Vir => "vir",
            Figure::Order => "order",
            Figure::Ablation => "ablation",
            Figure::Patching => "patching",
            Figure::Attribution => "attribution",
            Figure::Outliers => "outliers",
        }
    }

    pub fn view(self) -> View {
        match self {
            Figure::Matrix | Figure::Rollout | Figure::Heads => View::Explore,
            Figure::Vit | Figure::Vir => View::Vision,
            Figure::Order => View::Order,
            Figure::Ablation | Figure::Patching | Figure::Attribution | Figure::Outliers => {
                View::Lab
            }
        }
    }

    /// Whether the figure needs the chat model (the vision figures do not).
    pub fn needs_chat_model(self) -> bool {
        self.view() != View::Vision
    }

    fn parse(s: &str) -> Option<Self> {
        Figure::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// The vision view's image.
#[derive(Debug, Clone, PartialEq)]
pub enum VisionImage {
    TestDigit(usize),
    /// 784 bytes, `round(255 · value)`.
    Drawing(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub view: View,
    pub embed: Option<Figure>,
    /// What the explorer inspects.
    pub source: Option<InspectSource>,
    /// The Order view's question, options and mode (also set when `source` is the Order view).
    pub order: Option<(String, Vec<String>, bool)>,
    pub layer: Option<usize>,
    pub head: Option<usize>,
    pub token: Option<usize>,
    pub image: Option<VisionImage>,
    /// 0 parallel, 1 recurrent, 2 chunkwise.
    pub form: Option<usize>,
    pub chunk: Option<usize>,
    pub rollout: bool,
    /// The chat model (sha256) and, for a model from a URL, the URL.
    pub model: Option<(String, Option<String>)>,
    /// The Lab's ablation prompt and ablated (layer, head) pairs.
    pub prompt: Option<String>,
    pub ablate: Vec<(usize, usize)>,
    /// The Lab's patching prompts (clean, corrupted).
    pub patching: Option<(String, String)>,
    /// The token whose logit the Lab's attribution splits.
    pub dla_target: Option<u32>,
    /// The Lab's outlier run shown (an index into [`PRECISIONS`]).
    pub precision: Option<usize>,
    /// The chat's attention policy (`None`: none).
    pub policy: Option<AttentionPolicy>,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            view: View::Chat,
            embed: None,
            source: None,
            order: None,
            layer: None,
            head: None,
            token: None,
            image: None,
            form: None,
            chunk: None,
            rollout: false,
            model: None,
            prompt: None,
            ablate: Vec::new(),
            patching: None,
            dla_target: None,
            precision: None,
            policy: None,
        }
    }
}

pub const FORMS: [&str; 3] = ["parallel", "recurrent", "chunkwise"];

/// The outlier view's precision runs, as links name them (in the engine's order: f32, 8-bit
/// per block, 8-bit with outliers kept wide).
pub const PRECISIONS: [&str; 3] = ["f32", "q8", "int8"];

impl Link {
    /// Reads a query string (with or without its leading `?`). Unknown or malformed parameters
    /// are ignored: a damaged link still opens the page.
    pub fn parse(query: &str) -> Link {
        let pairs = parse_query(query);
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let number = |key: &str| get(key).and_then(|v| v.parse::<usize>().ok());
        let figure = get("figure").and_then(Figure::parse);
        let embed = get("embed")
            .is_some_and(|v| v == "1")
            .then_some(figure)
            .flatten();
        let view = get("view")
            .and_then(View::parse)
            .or(embed.map(Figure::view))
            .unwrap_or(View::Chat);
        let options: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == "option")
            .map(|(_, v)| v.clone())
            .collect();
        let set_based = get("mode") != Some("plain");
        let order = get("question").map(|q| (q.to_string(), options, set_based));
        let source = if let Some(text) = get("text") {
            Some(InspectSource::Text(text.to_string()))
        } else if let Some(chat) = get("chat") {
            serde_json::from_str::<Vec<(String, String)>>(chat)
                .ok()
                .map(|turns| {
                    InspectSource::Chat(
                        turns
                            .iter()
                            .map(|(role, text)| ChatMessage::new(role, text))
                            .collect(),
                    )
                })
        } else if get("source") == Some("order") {
            order
                .clone()
                .map(|(question, options, set_based)| InspectSource::Order {
                    question,
                    options,
                    set_based,
                })
        } else {
            None
        };
        let image = if let Some(d) = number("digit").filter(|&d| d < 1000) {
            Some(VisionImage::TestDigit(d))
        } else {
            get("drawing")
                .and_then(from_hex)
                .filter(|b| b.len() == 784)
                .map(VisionImage::Drawing)
        };
        Link {
            view,
            embed,
            source,
            order,
            layer: number("layer"),
            head: number("head"),
            token: number("token"),
            image,
            form: get("form").and_then(|f| FORMS.iter().position(|&n| n == f)),
            chunk: number("chunk").filter(|&c| c > 0),
            rollout: get("map") == Some("rollout"),
            model: get("model")
                .map(str::to_ascii_lowercase)
                .filter(|sha| sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|sha| (sha, get("model_url").map(str::to_string))),
            prompt: get("prompt").map(str::to_string),
            ablate: get("ablate").map(parse_heads).unwrap_or_default(),
            patching: get("clean")
                .zip(get("corrupt"))
                .map(|(c, k)| (c.into(), k.into())),
            dla_target: get("dla_target").and_then(|v| v.parse().ok()),
            precision: get("precision").and_then(|p| PRECISIONS.iter().position(|&n| n == p)),
            policy: get("policy")
                .and_then(|p| AttentionPolicy::parse(p).ok())
                .filter(AttentionPolicy::evicts),
        }
    }

    /// The query string, `?` included.
    pub fn to_query(&self) -> String {
        let mut pairs: Vec<(&str, String)> = vec![("view", self.view.name().to_string())];
        if let Some(figure) = self.embed {
            pairs.push(("embed", "1".into()));
            pairs.push(("figure", figure.name().into()));
        }
        match &self.source {
            Some(InspectSource::Text(text)) => pairs.push(("text", text.clone())),
            Some(InspectSource::Chat(messages)) => {
                let turns: Vec<(&str, &str)> = messages
                    .iter()
                    .map(|m| (m.role.as_str(), m.content.as_str()))
                    .collect();
                pairs.push(("chat", serde_json::to_string(&turns).unwrap_or_default()));
            }
            Some(InspectSource::Order { .. }) => pairs.push(("source", "order".into())),
            None => {}
        }
        let order = match &self.source {
            Some(InspectSource::Order {
                question,
                options,
                set_based,
            }) => Some((question.clone(), options.clone(), *set_based)),
            _ => self.order.clone(),
        };
        if let Some((question, options, set_based)) = order {
            pairs.push(("question", question));
            for option in options {
                pairs.push(("option", option));
            }
            pairs.push(("mode", if set_based { "set" } else { "plain" }.into()));
        }
        for (key, value) in [
            ("layer", self.layer),
            ("head", self.head),
            ("token", self.token),
        ] {
            if let Some(v) = value {
                pairs.push((key, v.to_string()));
            }
        }
        if let Some(prompt) = &self.prompt {
            pairs.push(("prompt", prompt.clone()));
        }
        if !self.ablate.is_empty() {
            let heads: Vec<String> = self
                .ablate
                .iter()
                .map(|(l, h)| format!("{l}:{h}"))
                .collect();
            pairs.push(("ablate", heads.join(",")));
        }
        if let Some((clean, corrupt)) = &self.patching {
            pairs.push(("clean", clean.clone()));
            pairs.push(("corrupt", corrupt.clone()));
        }
        if let Some(target) = self.dla_target {
            pairs.push(("dla_target", target.to_string()));
        }
        if let Some(precision) = self.precision.and_then(|p| PRECISIONS.get(p)) {
            pairs.push(("precision", precision.to_string()));
        }
        if let Some(policy) = &self.policy {
            pairs.push(("policy", policy_text(policy)));
        }
        match &self.image {
            Some(VisionImage::TestDigit(d)) => pairs.push(("digit", d.to_string())),
            Some(VisionImage::Drawing(bytes)) => pairs.push(("drawing", to_hex(bytes))),
            None => {}
        }
        if let Some(form) = self.form.and_then(|f| FORMS.get(f)) {
            pairs.push(("form", form.to_string()));
        }
        if let Some(chunk) = self.chunk {
            pairs.push(("chunk", chunk.to_string()));
        }
        if self.rollout {
            pairs.push(("map", "rollout".into()));
        }
        if let Some((sha256, url)) = &self.model {
            pairs.push(("model", sha256.clone()));
            if let Some(url) = url {
                pairs.push(("model_url", url.clone()));
            }
        }
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_component(v)))
            .collect();
        format!("?{}", body.join("&"))
    }
}

/// A policy as [`AttentionPolicy::parse`] reads it (a budget's first and recent tokens only
/// where they are not the default ones).
pub fn policy_text(policy: &AttentionPolicy) -> String {
    match *policy {
        AttentionPolicy::Full => "full".into(),
        AttentionPolicy::Lambda { n_global, n_local } => format!("lambda:{n_global},{n_local}"),
        AttentionPolicy::Budget { budget, .. } if *policy == AttentionPolicy::budget(budget) => {
            format!("budget:{budget}")
        }
        AttentionPolicy::Budget {
            budget,
            n_first,
            n_recent,
        } => format!("budget:{budget},{n_first},{n_recent}"),
    }
}

/// `3:5,4:1` → [(3, 5), (4, 1)]; pairs that are not two whole numbers are skipped.
fn parse_heads(text: &str) -> Vec<(usize, usize)> {
    text.split(',')
        .filter_map(|pair| {
            let (layer, head) = pair.split_once(':')?;
            Some((layer.trim().parse().ok()?, head.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_string::decode_component;

    #[test]
    fn every_parameter_survives_a_round_trip() {
        let links = [
            Link {
                view: View::Explore,
                source: Some(InspectSource::Text("Ünïcode & spaces = \"yes\"?".into())),
                layer: Some(5),
                head: Some(2),
                token: Some(11),
                ..Link::default()
            },
            Link {
                view: View::Explore,
                embed: Some(Figure::Rollout),
                source: Some(InspectSource::Chat(vec![
                    ChatMessage::new("user", "What is 2+2?"),
                    ChatMessage::new("assistant", "4, of course.\nNext line"),
                ])),
                ..Link::default()
            },
            Link {
                view: View::Explore,
                source: Some(InspectSource::Order {
                    question: "Which is largest?".into(),
                    options: vec!["A mouse".into(), "An elephant".into()],
                    set_based: false,
                }),
                order: Some((
                    "Which is largest?".into(),
                    vec!["A mouse".into(), "An elephant".into()],
                    false,
                )),
                ..Link::default()
            },
            Link {
                view: View::Vision,
                embed: Some(Figure::Vit),
                image: Some(VisionImage::Drawing(
                    (0..784).map(|i| (i % 256) as u8).collect(),
                )),
                form: Some(2),
                chunk: Some(7),
                rollout: true,
                layer: Some(1),
                head: Some(3),
                ..Link::default()
            },
            Link {
                view: View::Vision,
                image: Some(VisionImage::TestDigit(999)),
                ..Link::default()
            },
            Link {
                model: Some((
                    "ab".repeat(32),
                    Some("https://example.org/m.gguf?x=1&y".into()),
                )),
                ..Link::default()
            },
            Link {
                view: View::Order,
                model: Some(("0f".repeat(32), None)),
                ..Link::default()
            },
            Link {
                view: View::Lab,
                embed: Some(Figure::Patching),
                prompt: Some("The capital of France is".into()),
                ablate: vec![(0, 4), (12, 3)],
                layer: Some(0),
                head: Some(4),
                patching: Some(("Paris & co".into(), "Rome, 100%".into())),
                ..Link::default()
            },
            Link {
                view: View::Lab,
                embed: Some(Figure::Attribution),
                dla_target: Some(7042),
                precision: Some(1),
                ..Link::default()
            },
            Link {
                policy: Some(AttentionPolicy::Lambda {
                    n_global: 4,
                    n_local: 256,
                }),
                ..Link::default()
            },
            Link {
                policy: Some(AttentionPolicy::budget(48)),
                ..Link::default()
            },
            Link {
                policy: Some(AttentionPolicy::Budget {
                    budget: 64,
                    n_first: 2,
                    n_recent: 8,
                }),
                ..Link::default()
            },
            Link {
                view: View::Lab,
                embed: Some(Figure::Outliers),
                precision: Some(2),
                ..Link::default()
            },
        ];
        for link in links {
            let query = link.to_query();
            assert_eq!(Link::parse(&query), link, "{query}");
        }
    }

    #[test]
    fn damaged_links_still_open() {
        let link = Link::parse("?view=nowhere&layer=x&digit=5000&drawing=zz&form=sideways&%E2%28");
        assert_eq!(link.view, View::Chat);
        assert_eq!(
            (link.layer, link.image.clone(), link.form),
            (None, None, None)
        );
        // embed without a known figure is not embed mode.
        assert_eq!(Link::parse("?embed=1&figure=teapot").embed, None);
        assert_eq!(Link::parse("?embed=1&figure=vir").view, View::Vision);
        // A model is named by a whole sha256 or not at all.
        assert_eq!(Link::parse("?model=abc").model, None);
        assert_eq!(Link::parse("?model_url=https://x/m.gguf").model, None);
        assert_eq!(decode_component("100%"), "100%");
        // Heads that are not LAYER:HEAD are skipped; a patching link needs both prompts.
        let lab = Link::parse("?view=lab&ablate=1:2,x:3,4,5:6&clean=a");
        assert_eq!((lab.ablate, lab.patching), (vec![(1, 2), (5, 6)], None));
        assert_eq!(decode_component("a+b%20c"), "a b c");
    }
}
