#!/usr/bin/env node
// Runs the TypeScript CLI with no build step (and no npm lifecycle script): from JavaScript it
// transpiles once per state of the sources into .build/cli/ (scripts/cli-build.js; a server is
// ready ~0.65 s sooner than through tsx's loader), or under tsx when no build can be had (a
// read-only checkout) or MESH_SDS_RUN_TSX=1. Started from a transpiled mirror the test suite
// builds of this repository (scripts/build-js.js: its bin links to this folder), it runs the
// mirror's JavaScript.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join, resolve } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const invokedRoot = process.argv[1] ? resolve(dirname(resolve(process.argv[1])), '..') : root;
if (invokedRoot !== root && builtFrom(invokedRoot) === root) {
  await import(pathToFileURL(join(invokedRoot, 'src', 'cli', 'main.js')).href);
} else {
  const built = process.env.MESH_SDS_RUN_TSX === '1' ? undefined : await (await import('../scripts/cli-build.js')).cliBuild(root);
  if (built) {
    await import(pathToFileURL(join(built, 'src', 'cli', 'main.js')).href);
  } else {
    const { register } = await import('tsx/esm/api');
    register();
    await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
  }
}

function builtFrom(dir) {
  const mark = join(dir, '.mesh-sds-transpiled-from');
  return existsSync(mark) ? readFileSync(mark, 'utf8') : undefined;
}
