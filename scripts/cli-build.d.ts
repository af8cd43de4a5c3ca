// Types of scripts/cli-build.js (plain JavaScript: bin/mesh-sds.js loads it before any TypeScript can run).
/** esbuild's per-file transform options, shared with the test suite's mirror. */
export declare const TRANSFORM: { platform: 'node'; format: 'esm'; target: string };
/** The digest of everything a build is made from; names its folder under .build/cli. */
export declare function sourceDigest(root: string): string;
/** The folder of the CLI's JavaScript for the sources as they are now (built when missing), or undefined when none can be had. */
export declare function cliBuild(root: string): Promise<string | undefined>;
/** Makes `dir` (below `root`) with its parents, those it creates owned by the checkout's owner when root makes them. */
export declare function makeOwnedDir(root: string, dir: string): void;
/** Hands `tree` and everything in it to the checkout's owner when this process is root in a checkout someone else owns. */
export declare function giveTreeToOwner(root: string, tree: string): void;
