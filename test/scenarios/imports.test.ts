/**
 * Goal: the built-in scenarios are written from the outside, as a user's would be — every file in
 * scenarios/ imports only the public entry (src/index.ts), its siblings, and Node's own modules.
 * Method: read each file's import and export-from specifiers.
 */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = new URL('../../scenarios/', import.meta.url).pathname;
const SPECIFIER = /(?:^|\n)\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

function specifiers(source: string): string[] {
  return [...source.matchAll(SPECIFIER)].map((m) => m[1] ?? m[2] ?? m[3]);
}

test('every file in scenarios/ imports only src/index.ts, its siblings and node: modules', (t) => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  t.true(files.length >= 4, `scenario files: ${files.join(', ')}`);
  for (const file of files) {
    const imports = specifiers(readFileSync(join(dir, file), 'utf8'));
    t.true(imports.length > 0, `${file} imports something`);
    const bad = imports.filter((s) => s !== '../src/index.ts' && !/^\.\/[\w.-]+\.ts$/.test(s) && !s.startsWith('node:'));
    t.deepEqual(bad, [], `${file} reaches past the public entry`);
  }
});

test('the import check sees every form of import', (t) => {
  const source = [
    "import { a } from '../src/index.ts';",
    "import type { B } from '../src/explore/scenario.ts';",
    "export { c } from './c.ts';",
    "import './side-effect.ts';",
    "const m = await import('../src/intro/engine.ts');",
    "import {\n  d,\n  e,\n} from 'node:fs';",
  ].join('\n');
  t.deepEqual(specifiers(source), ['../src/index.ts', '../src/explore/scenario.ts', './c.ts', './side-effect.ts', '../src/intro/engine.ts', 'node:fs']);
});

test('the package name resolves to the public entry (package.json exports), for scenarios kept outside the project', async (t) => {
  const byName = await import('vcpusim');
  const byPath = await import('../../src/index.ts');
  t.is(byName.ScenarioRig, byPath.ScenarioRig);
  const { selfReferenceWorks } = await import('../support/self-reference.ts');
  t.true(selfReferenceWorks);
});
