// Resources contributed by many sources (files), kept incrementally: a change to one source
// touches only the keys it defines, and a snapshot is a copy of maps, never a re-parse.
import { LayeredMap } from '../api/layered-map.js';
import { resourceKey, type Resource, type ResourceError } from '../api/types.js';

export interface SourceContribution {
  resources: readonly Resource[];
  errors: readonly ResourceError[];
  /** Version of every resource of this source (optimistic concurrency). */
  version: string;
}

export class ResourceIndex {
  private readonly sources = new Map<string, SourceContribution>();
  /** Each source's resources by key: a file of 1,000 Dataplanes was searched 1,000 times (quadratic). */
  private readonly keyed = new Map<string, Map<string, Resource>>();
  /** key → sources defining it, sorted by name (the winner when none is being served). */
  private readonly definers = new Map<string, string[]>();
  /** key → the source whose definition wins; the other definers are the duplicates. */
  private readonly winnerSource = new Map<string, string>();
  /**
   * key → the source whose definition the last snapshot served. It keeps winning while it still
   * defines the key: a copy added later (a draft next to the real file) must not take over.
   */
  private readonly servedBy = new Map<string, string>();
  /** key → the sources whose definition the last snapshot reported as an ignored duplicate. */
  private ignoredAtPublish = new Map<string, Set<string>>();
  private readonly winners = new Map<string, Resource>();
  private readonly versions = new Map<string, string>();
  private readonly withErrors = new Set<string>();
  private readonly duplicated = new Set<string>();
  /** What the last snapshot handed out, and the keys settled since (the next snapshot shares the rest). */
  private published = { resources: LayeredMap.from<Resource>([]), versions: LayeredMap.from<string>([]) };
  private readonly unpublished = new Set<string>();

  get(source: string): SourceContribution | undefined {
    return this.sources.get(source);
  }

  sourceNames(): IterableIterator<string> {
    return this.sources.keys();
  }

  /** The sources that define `key`, by name. */
  definersOf(key: string): readonly string[] {
    return this.definers.get(key) ?? [];
  }

  /** Whether `source`'s definition of `key` was published as an ignored duplicate (a draft beside the real one). */
  wasIgnored(key: string, source: string): boolean {
    return this.ignoredAtPublish.get(key)?.has(source) ?? false;
  }

  versionOf(key: string): string | undefined {
    return this.versions.get(key);
  }

  /** Sets (or with undefined removes) what one source contributes. */
  set(source: string, c: SourceContribution | undefined): void {
    const touched = new Set<string>();
    for (const key of this.keyed.get(source)?.keys() ?? []) {
      touched.add(key);
      const list = this.definers.get(key)?.filter((s) => s !== source) ?? [];
      if (list.length > 0) this.definers.set(key, list);
      else this.definers.delete(key);
    }
    // The first of two same-key resources in one file is the one that counts (as before).
    const byKey = new Map<string, Resource>();
    for (const r of c?.resources ?? []) {
      const key = resourceKey(r);
      if (!byKey.has(key)) byKey.set(key, r);
    }
    if (c) {
      this.sources.set(source, c);
      this.keyed.set(source, byKey);
    } else {
      this.sources.delete(source);
      this.keyed.delete(source);
    }
    if (c && c.errors.length > 0) this.withErrors.add(source);
    else this.withErrors.delete(source);
    for (const key of byKey.keys()) {
      touched.add(key);
      const list = this.definers.get(key) ?? [];
      if (!list.includes(source)) {
        list.push(source);
        list.sort();
      }
      this.definers.set(key, list);
    }
    for (const key of touched) this.settle(key);
  }

  private settle(key: string): void {
    const list = this.definers.get(key);
    const incumbent = this.servedBy.get(key);
    const source = incumbent !== undefined && list?.includes(incumbent) ? incumbent : list?.[0];
    const winner = source === undefined ? undefined : this.keyed.get(source)?.get(key);
    if (winner && source !== undefined) {
      this.winnerSource.set(key, source);
      this.winners.set(key, winner);
      this.versions.set(key, this.sources.get(source)!.version);
    } else {
      this.winnerSource.delete(key);
      this.winners.delete(key);
      this.versions.delete(key);
    }
    if (list && list.length > 1) this.duplicated.add(key);
    else this.duplicated.delete(key);
    this.unpublished.add(key);
  }

  /** Immutable maps for a snapshot: the last snapshot's with what changed since applied. */
  snapshot(): { resources: LayeredMap<Resource>; versions: LayeredMap<string>; errors: ResourceError[] } {
    const errors: ResourceError[] = [];
    for (const s of [...this.withErrors].sort()) for (const e of this.sources.get(s)!.errors) errors.push(e);
    const ignored = new Map<string, Set<string>>();
    for (const key of this.duplicated) {
      const served = this.winnerSource.get(key)!;
      const r = this.winners.get(key)!;
      for (const other of this.definers.get(key)!) {
        if (other === served) continue;
        let set = ignored.get(key);
        if (!set) ignored.set(key, (set = new Set()));
        set.add(other);
        const dup = this.keyed.get(other)?.get(key);
        errors.push({
          file: dup?.source?.file ?? other,
          document: dup?.source?.document ?? 0,
          path: 'metadata.name',
          message: `duplicate ${r.kind} "${r.name}" of mesh "${r.mesh}": already defined in ${r.source?.file ?? served}; this copy is ignored`,
        });
      }
    }
    this.ignoredAtPublish = ignored;
    if (this.unpublished.size > 0) {
      const resources = new Map<string, Resource | undefined>();
      const versions = new Map<string, string | undefined>();
      for (const key of this.unpublished) {
        resources.set(key, this.winners.get(key));
        versions.set(key, this.versions.get(key));
        const source = this.winnerSource.get(key);
        if (source === undefined) this.servedBy.delete(key);
        else this.servedBy.set(key, source);
      }
      this.unpublished.clear();
      this.published = { resources: this.published.resources.with(resources), versions: this.published.versions.with(versions) };
    }
    return { ...this.published, errors };
  }
}
