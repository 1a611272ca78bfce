// The command line of the page benchmarks run by hand (pair-page.mjs, profile-page.mjs,
// chat-vs-hook.mjs): numeric `--name value` options, and the served page's address.

/** The number after `--name` on the command line, or `fallback`. */
export function numberOption(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return Number(i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback);
}

/** GLASSBOX_BASE_URL, where the page is served; without it, says so and exits. */
export function servedBaseUrl() {
  const url = process.env.GLASSBOX_BASE_URL;
  if (!url) {
    console.error('GLASSBOX_BASE_URL is not set: serve dist/ first (see the comment at the top)');
    process.exit(2);
  }
  return url;
}
