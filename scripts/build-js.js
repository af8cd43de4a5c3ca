#!/usr/bin/env node
// Transpiles the TypeScript of src, scripts, test and bench once into .build/js, a mirror of the
// repository whose every other file is a link to the original, so the test suite's ~160 test
// processes and the hundreds of `mesh-sds` processes they spawn start without tsx's loader
// (`mesh-sds --help`: 0.23 s instead of 0.55 s on an idle machine; a test spawning twenty CLI
// processes pays that twenty times). It is the same per-file esbuild transform tsx applies: the
// code run is the code written. bin/mesh-sds.js started from the mirror runs the mirror's JS.
// Usage: node scripts/build-js.js [dir] (default .build/js; prints the mirror's path). Takes ~0.8 s.
import { buildSync } from 'esbuild';
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { giveTreeToOwner, makeOwnedDir, TRANSFORM } from './cli-build.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const MIRROR = join(ROOT, '.build', 'js');
/** In the mirror: the repository it was built from (bin/mesh-sds.js runs the mirror's JS only when it names its own). */
export const MIRROR_MARK = '.mesh-sds-transpiled-from';

/** Folders holding TypeScript: mirrored file by file. Everything else at the top is one link. */
const TRANSPILED = new Set(['src', 'scripts', 'test', 'bench']);
/** Not mirrored: the repository's own history, build output, a server's state. */
const SKIPPED = new Set(['.git', '.build', '.state']);

function mirrorTree(from, to, sources) {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    const src = join(from, name);
    if (statSync(src).isDirectory()) {
      mirrorTree(src, join(to, name), sources);
      continue;
    }
    // The .ts itself is linked too: tests that read sources, or hand them to a tsx child, find them.
    symlinkSync(src, join(to, name));
    if (name.endsWith('.ts') && !name.endsWith('.d.ts')) sources.push(src);
  }
}

export function buildMirror(mirror = MIRROR) {
  const staging = `${mirror}.${process.pid}.tmp`;
  rmSync(staging, { recursive: true, force: true });
  // .build made by root in a user's checkout (sudo npm test) stays the user's; so does a mirror a killed run leaves.
  makeOwnedDir(ROOT, dirname(staging));
  mkdirSync(staging);
  const sources = [];
  for (const name of readdirSync(ROOT)) {
    if (SKIPPED.has(name)) continue;
    if (TRANSPILED.has(name)) mirrorTree(join(ROOT, name), join(staging, name), sources);
    else symlinkSync(join(ROOT, name), join(staging, name));
  }
  buildSync({
    entryPoints: sources,
    outdir: staging,
    outbase: ROOT,
    ...TRANSFORM,
    logLevel: 'warning',
    tsconfig: join(ROOT, 'tsconfig.json'),
  });
  // Each .js keeps its source's times: what compares a source's age (the proto descriptor's
  // staleness check, scripts/build-protos.ts) sees the source's, not the moment of this build.
  for (const src of sources) {
    const st = statSync(src);
    utimesSync(join(staging, src.slice(ROOT.length + 1).replace(/\.ts$/, '.js')), st.atime, st.mtime);
  }
  writeFileSync(join(staging, MIRROR_MARK), ROOT);
  giveTreeToOwner(ROOT, staging);
  rmSync(mirror, { recursive: true, force: true });
  renameSync(staging, mirror);
  return mirror;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(buildMirror(process.argv[2] ? resolve(process.argv[2]) : MIRROR));
}
