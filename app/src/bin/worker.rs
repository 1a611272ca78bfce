fn main() {
    app::worker::start();
}
