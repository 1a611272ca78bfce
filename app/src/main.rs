fn main() {
    leptos::mount::mount_to_body(app::components::App);
}
