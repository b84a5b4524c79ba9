/**
 * Goal: folders depend downward only (DESIGN.md): cpu → machine → asm → guest → intro → host →
 * actors → explore → report → cli → the public entry → its AVA macro. Method: read every source file's import
 * specifiers, resolve the relative ones, and name any import of a folder at or above its own layer
 * (a folder may import itself).
 */
import test from 'ava';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
/** Lowest first; each may import only those before it (and itself). */
const LAYERS = ['src/cpu', 'src/machine', 'src/asm', 'src/guest', 'src/intro', 'src/host', 'actors', 'src/explore', 'src/report', 'src/cli', 'src/index.ts', 'src/ava.ts'];
const SPECIFIER = /(?:^|\n)\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

function layerOf(path: string): number {
  const rel = relative(root, path);
  return LAYERS.findIndex((layer) => rel === layer || rel.startsWith(`${layer}/`));
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

test('every folder imports only the folders below it', (t) => {
  const files = [...sources(join(root, 'src')), ...sources(join(root, 'actors'))];
  t.true(files.length > 100, `${files.length} files`);
  const upward: string[] = [];
  for (const file of files) {
    const own = layerOf(file);
    t.not(own, -1, `${relative(root, file)} belongs to a layer`);
    for (const match of readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
      const specifier = match[1] ?? match[2] ?? match[3];
      if (!specifier.startsWith('.')) continue;
      const target = layerOf(resolve(dirname(file), specifier));
      if (target > own) upward.push(`${relative(root, file)} imports ${specifier} (${LAYERS[target]} is above ${LAYERS[own]})`);
    }
  }
  t.deepEqual(upward, []);
});
