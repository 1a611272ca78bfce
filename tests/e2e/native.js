// The native engine, for comparing the page's numbers with: the `glassbox` CLI that
// `cargo xtask test` builds before the e2e tests.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'target/release/glassbox');

/** One head from the native engine, for the same token ids. */
export function nativeHead(ids, layer, head) {
  if (!existsSync(CLI)) {
    throw new Error(`${CLI} is missing: \`cargo xtask test\` builds it before the e2e tests`);
  }
  const idsFile = join(mkdtempSync(join(tmpdir(), 'glassbox-ids-')), 'ids.json');
  writeFileSync(idsFile, JSON.stringify(ids));
  const out = execFileSync(CLI, [
    'attention', '--ids-file', idsFile, '--layer', String(layer), '--head', String(head),
  ], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  return JSON.parse(out);
}

export function maxDifference(a, b) {
  let worst = 0;
  a.forEach((row, i) => row.forEach((v, j) => { worst = Math.max(worst, Math.abs(v - b[i][j])); }));
  return worst;
}

/** What `glassbox eval-vision --write-report` recorded, and the shipped test digits. */
export const visionReport = () => JSON.parse(readFileSync(join(ROOT, 'www/models/vision.json'), 'utf8'));
export const testDigitLabel = (i) => readFileSync(join(ROOT, 'www/models/mnist-test.bin'))[i * 785];
