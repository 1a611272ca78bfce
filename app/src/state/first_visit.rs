//! The first visit: the page says what it is and what it will download before it does. With
//! the browser's data saver on (`navigator.connection.saveData`), the download waits for the
//! Start button, unless the model is already stored here or this browser started it before.
//! Both facts live in localStorage.

use wasm_bindgen::JsValue;

/// The welcome was read (Start or "Got it" pressed).
const WELCOMED_KEY: &str = "glassbox.welcomed";
/// A model was loaded in this browser once: later visits need not ask again.
const STARTED_KEY: &str = "glassbox.started";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

fn flag(key: &str) -> bool {
    storage()
        .and_then(|s| s.get_item(key).ok().flatten())
        .is_some()
}

fn set_flag(key: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(key, "1");
    }
}

/// The browser asks pages to save data (Chromium's `navigator.connection.saveData`).
pub fn data_saver_on() -> bool {
    let Some(window) = web_sys::window() else {
        return false;
    };
    let navigator: JsValue = window.navigator().into();
    js_sys::Reflect::get(&navigator, &"connection".into())
        .ok()
        .filter(|c| c.is_object())
        .and_then(|c| js_sys::Reflect::get(&c, &"saveData".into()).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

pub fn welcomed() -> bool {
    flag(WELCOMED_KEY)
}

pub fn mark_welcomed() {
    set_flag(WELCOMED_KEY);
}

pub fn mark_started() {
    set_flag(STARTED_KEY);
}

/// Whether the model's download waits for the Start button.
pub fn download_waits() -> bool {
    data_saver_on() && !flag(STARTED_KEY)
}
