//! What Glassbox computes about a model rather than with it: the attention explorer's data
//! ([`inspect`]), attention rollout ([`rollout`]), and Set-Based Prompting's order-invariant
//! prompts ([`set_prompt`]). Everything here works through the engine handle and plain host
//! data, whatever the backend.

pub mod inspect;
pub mod rollout;
pub mod set_prompt;
