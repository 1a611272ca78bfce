//! What Glassbox computes about a model rather than with it: the attention explorer's data
//! ([`inspect`]), attention rollout ([`rollout`]), Set-Based Prompting's order-invariant
//! prompts ([`set_prompt`]), and the Lab's experiments: activation patching ([`patching`]),
//! steering vectors and mean ablation ([`probes`]), direct logit attribution
//! ([`attribution`]), outlier features and 8-bit activations ([`outliers`]), attention
//! policies on long inputs ([`long_context`]). Everything here works through the engine
//! handle and plain host data, whatever the backend.

pub mod attribution;
pub mod inspect;
pub mod long_context;
pub mod outliers;
pub mod patching;
pub mod probes;
pub mod rollout;
pub mod set_prompt;
