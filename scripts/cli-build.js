// The CLI's JavaScript, transpiled once per state of its sources: bin/mesh-sds.js runs from here
// instead of through tsx's loader, whose off-thread module hooks cost a server ~0.7 s of start-up
// (10,000 Dataplanes: ready in 1.6–1.7 s instead of 2.3–2.5 s) and every command ~0.3 s.
// A build lives in .build/cli/<digest>/, the digest taken over every .ts of src and scripts (what
// the CLI imports), tsconfig.json, esbuild's version and the build recipe: a changed source is a
// new folder, never an old one rewritten, so a running server never has its files replaced under
// it (its issuance workers are started from them again after a crash).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';

/** What the CLI imports from the repository: transpiled file by file (everything else is linked). */
export const CLI_SOURCES = ['src', 'scripts'];
const MARK = '.mesh-sds-transpiled-from';
/** Builds kept besides the one in use: older ones, unused for a month, are removed. */
const KEEP_BUILDS = 8;
const UNUSED_MS = 30 * 24 * 3600 * 1000;

/** Every .ts below `dir`, links followed as the build follows them (scripts/build-js.js). */
function tsFiles(dir, out) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() || (entry.isSymbolicLink() && statSync(path).isDirectory())) tsFiles(path, out);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** The digest of everything a build is made from (contents, not times: a checkout keeps no times). */
export function sourceDigest(root) {
  const h = createHash('sha256');
  const files = CLI_SOURCES.flatMap((d) => tsFiles(join(root, d), [])).sort();
  for (const f of files) h.update(f.slice(root.length)).update('\0').update(readFileSync(f)).update('\0');
  for (const f of ['tsconfig.json', 'node_modules/esbuild/package.json', 'scripts/build-js.js', 'scripts/cli-build.js']) {
    h.update(f).update('\0').update(readFileSync(join(root, f))).update('\0');
  }
  return h.digest('hex').slice(0, 24);
}

/**
 * The folder of the CLI's transpiled JavaScript for the sources as they are now, built when there
 * is none; undefined when it cannot be had (a read-only checkout, no esbuild): then the caller runs
 * the sources under tsx.
 */
export async function cliBuild(root) {
  try {
    const builds = join(root, '.build', 'cli');
    const dir = join(builds, sourceDigest(root));
    if (!existsSync(join(dir, MARK))) {
      mkdirSync(builds, { recursive: true });
      const { buildInto } = await import('./build-js.js');
      const staging = `${dir}.${process.pid}.tmp`;
      try {
        buildInto(staging, new Set(CLI_SOURCES), root);
        renameSync(staging, dir);
      } catch (e) {
        // Another process made the same build first (theirs is used), or this one failed half-way.
        rmSync(staging, { recursive: true, force: true });
        if (!existsSync(join(dir, MARK))) throw e;
      }
      prune(builds, dir);
    }
    // Marks it as in use, for prune(); a build another user made is used all the same.
    try {
      const now = new Date();
      utimesSync(dir, now, now);
    } catch {
      // not ours to touch
    }
    return dir;
  } catch {
    return undefined;
  }
}

/**
 * Removes builds of earlier sources beyond the newest KEEP_BUILDS that no one started for a month,
 * and what a build that died half-way left (an hour old).
 */
function prune(builds, current) {
  const now = Date.now();
  const old = [];
  for (const name of readdirSync(builds)) {
    const d = join(builds, name);
    if (d === current) continue;
    const used = statSync(d).mtimeMs;
    if (name.endsWith('.tmp')) {
      if (now - used > 3600_000) rmSync(d, { recursive: true, force: true });
    } else old.push({ d, used });
  }
  old.sort((a, b) => b.used - a.used);
  for (const { d, used } of old.slice(KEEP_BUILDS)) if (now - used > UNUSED_MS) rmSync(d, { recursive: true, force: true });
}
