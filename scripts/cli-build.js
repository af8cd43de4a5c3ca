// The CLI's JavaScript, transpiled once per state of its sources: bin/mesh-sds.js runs from here
// instead of through tsx's loader, whose off-thread module hooks cost a server ~0.7 s of start-up
// (10,000 Dataplanes: ready in 1.3–1.6 s instead of 2.0–2.4 s) and every command ~0.25 s.
//
// A build lives in .build/cli/<digest>/. The digest is taken over the checkout's path, the bytes of
// every .ts of src and scripts (what the CLI imports), the names of every other file there, and the
// recipe (tsconfig.json, esbuild's version, this file), and the build is made from exactly the
// bytes digested (a source saved while it is built cannot end up under the wrong name). A changed
// source, or a checkout copied elsewhere, is a new folder; a folder is never rewritten nor removed
// by this code, so a running server never has its files replaced under it (its issuance workers
// are started from them again after a crash). `rm -rf .build/cli` clears them when no server runs
// from the checkout.
import { createHash } from 'node:crypto';
import { existsSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

/** What the CLI imports from the repository: transpiled file by file (their other files linked). */
const CLI_SOURCES = ['src', 'scripts'];
/** esbuild's per-file transform, as tsx applies it: the test suite's mirror (scripts/build-js.js) uses the same. */
export const TRANSFORM = { platform: 'node', format: 'esm', target: 'node20' };
/** What src and scripts read from the top level of the checkout (package.json, the Envoy protos and buf's config, node_modules' binaries). */
const TOP_LEVEL_LINKS = ['package.json', 'proto', 'buf.yaml', 'node_modules'];
/** Written last into a complete build: names the checkout it was made from. */
const MARK = '.mesh-sds-cli-build';
const RECIPE = ['tsconfig.json', 'node_modules/esbuild/package.json', 'scripts/cli-build.js'];
/** A build that died half-way leaves its staging folder: removed once this old. */
const STALE_STAGING_MS = 3600_000;

/** Every file below the CLI's source folders, links followed, sorted: `{ rel, abs, source }` with a .ts file's bytes in `source`. */
function readSources(root) {
  const files = [];
  const walk = (rel) => {
    for (const entry of readdirSync(join(root, rel), { withFileTypes: true })) {
      const r = join(rel, entry.name);
      const abs = join(root, r);
      if (entry.isDirectory() || (entry.isSymbolicLink() && statSync(abs).isDirectory())) walk(r);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) files.push({ rel: r, abs, source: readFileSync(abs) });
      else files.push({ rel: r, abs });
    }
  };
  for (const d of CLI_SOURCES) walk(d);
  return files.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

function digestOf(root, files) {
  const h = createHash('sha256').update(root).update('\0');
  for (const f of RECIPE) h.update(f).update('\0').update(readFileSync(join(root, f))).update('\0');
  for (const f of files) {
    h.update(f.rel).update('\0');
    // Other files are linked: their contents are read live, only their names make the build.
    if (f.source) h.update('ts\0').update(f.source).update('\0');
  }
  return h.digest('hex').slice(0, 32);
}

/** The digest naming the build of the sources as they are now. */
export function sourceDigest(root) {
  return digestOf(root, readSources(root));
}

/** Transpiles `files` (as read) into `dir`: the per-file esbuild transform tsx applies; everything else linked. */
async function buildInto(dir, root, files) {
  const { transformSync } = await import('esbuild');
  const tsconfigRaw = readFileSync(join(root, 'tsconfig.json'), 'utf8');
  for (const name of TOP_LEVEL_LINKS) if (existsSync(join(root, name))) symlinkSync(join(root, name), join(dir, name));
  for (const f of files) {
    const out = join(dir, f.rel);
    mkdirSync(dirname(out), { recursive: true });
    if (!f.source) {
      symlinkSync(f.abs, out);
      continue;
    }
    const js = out.replace(/\.ts$/, '.js');
    const { code } = transformSync(f.source.toString('utf8'), { ...TRANSFORM, loader: 'ts', sourcefile: f.abs, tsconfigRaw });
    writeFileSync(js, code);
    // The source's times: what compares a source's age (the proto descriptor's staleness check,
    // scripts/build-protos.ts) sees the source's, not the moment of this build.
    const st = statSync(f.abs);
    utimesSync(js, st.atime, st.mtime);
  }
  writeFileSync(join(dir, MARK), root);
}

/**
 * The folder of the CLI's transpiled JavaScript for the sources as they are now, built when there
 * is none; undefined when it cannot be had (a read-only checkout, no esbuild): then the caller runs
 * the sources under tsx.
 */
export async function cliBuild(root) {
  try {
    const files = readSources(root);
    const digest = digestOf(root, files);
    const builds = join(root, '.build', 'cli');
    const dir = join(builds, digest);
    if (complete(dir)) return dir;
    makeOwnedDir(root, builds);
    // One left incomplete (its removal cut short by hand) is moved aside, never built into.
    if (existsSync(dir)) renameSync(dir, join(builds, `${digest}.tmp-incomplete-${process.pid}-${Date.now()}`));
    const staging = mkdtempSync(join(builds, `${digest}.tmp-`));
    try {
      await buildInto(staging, root, files);
      giveTreeToOwner(root, staging);
      renameSync(staging, dir);
    } catch (e) {
      // Another process made the same build first (theirs is used), or this one failed half-way.
      rmSync(staging, { recursive: true, force: true });
      if (!complete(dir)) throw e;
    }
    removeStaleStaging(builds);
    return dir;
  } catch {
    return undefined;
  }
}

const complete = (dir) => existsSync(join(dir, MARK)) && existsSync(join(dir, 'src', 'cli', 'main.js'));

/** What builds that died half-way left (their own name, an hour old); nothing else is removed. */
function removeStaleStaging(builds) {
  for (const name of readdirSync(builds)) {
    if (!name.includes('.tmp-')) continue;
    try {
      const d = join(builds, name);
      if (Date.now() - statSync(d).mtimeMs > STALE_STAGING_MS) rmSync(d, { recursive: true, force: true });
    } catch {
      // another process removed it first, or it is not ours to remove
    }
  }
}

/**
 * The checkout owner's ids when this process is root in a checkout someone else owns, else
 * undefined: what root makes in .build is then handed to the owner. `sudo npm start` left a
 * root-owned .build in a user's checkout, where that user's `npm test` could no longer make its
 * mirror, nor the CLI its build.
 */
function foreignOwner(root) {
  if (process.getuid?.() !== 0) return undefined;
  const st = statSync(root);
  return st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid };
}

/** Makes the folder `dir` below `root` with its parents; those it creates belong to the checkout's owner (see foreignOwner). */
export function makeOwnedDir(root, dir) {
  const first = mkdirSync(dir, { recursive: true });
  const owner = first === undefined ? undefined : foreignOwner(root);
  if (!owner) return;
  // From the first folder made down to `dir`: those above it were there already.
  let d = first;
  lchownSync(d, owner.uid, owner.gid);
  for (const part of relative(first, dir).split('/').filter(Boolean)) lchownSync((d = join(d, part)), owner.uid, owner.gid);
}

/** Hands everything in `tree` (links themselves, not what they lead to) to the checkout's owner (see foreignOwner). */
export function giveTreeToOwner(root, tree) {
  const owner = foreignOwner(root);
  if (!owner) return;
  const walk = (d) => {
    lchownSync(d, owner.uid, owner.gid);
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else lchownSync(join(d, e.name), owner.uid, owner.gid);
    }
  };
  walk(tree);
}
